// redis_tasks HOST PORT [TASKS]: hiredis's blocking API, unchanged, in many
// fiberloop tasks at once on one thread.
//
// hiredis knows nothing of fiberloop: redisConnect() and redisCommand() call
// libc's connect(), poll(), write() and read() and block until the answer
// comes. In a task, such a call would hold the loop's thread, and every
// other task with it: the tasks would take turns, one command at a time.
// This program links libfiberloop-hooks (samples/meson.build:
// fiberloop_hooks_dep), and nothing else changes. Inside a task those libc
// calls now wait on the loop, so while one task waits for Redis's answer
// the others send their commands: TASKS connections are busy at once.
//
// Each task INCRs a shared counter and SETs then GETs a key of its own,
// ROUNDS times. The summary says whether every answer was right and how
// many tasks were inside a redis call at the same moment: 1 would mean the
// calls ran one after another, as they would without the hooks.
//
//   redis-server --port 6380 --save '' &
//   build/samples/redis_tasks 127.0.0.1 6380 100
#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <fiberloop/hooks.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr int kRounds = 100;
// The sample's keys carry a prefix of their own: it may be pointed at a
// Redis that holds somebody's data.
const std::string kCounter = "redis_tasks:counter";

// hiredis's objects in unique_ptrs, so that every path frees them.
struct FreeReply {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
struct FreeContext {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Reply = std::unique_ptr<redisReply, FreeReply>;
using Context = std::unique_ptr<redisContext, FreeContext>;

// InFlight counts the tasks inside a redis call right now, and the most
// there ever were. Plain ints: every task runs on the loop's one thread,
// and a task only gives the thread up inside a call that waits.
struct InFlight {
  int now = 0;
  int most = 0;
};

// command() is redisCommand() with the count kept around it.
Reply command(redisContext* c, InFlight& in_flight, const char* format, ...) {
  in_flight.most = std::max(in_flight.most, ++in_flight.now);
  va_list args;
  va_start(args, format);
  // The task may be parked in here, inside hiredis's read(), while others run.
  Reply r(static_cast<redisReply*>(redisvCommand(c, format, args)));
  va_end(args);
  --in_flight.now;
  return r;
}

// connect() is hiredis's own blocking connect; the hooks make its
// getaddrinfo (on a worker thread), connect and poll wait on the loop. The
// timeout is hiredis's too (SO_RCVTIMEO / SO_SNDTIMEO), and the hooks
// honour it: a Redis that stops answering fails the call after 5 s rather
// than leaving the task waiting forever.
Context connect(const std::string& host, int port, std::string& error) {
  timeval five_seconds{5, 0};
  Context c(redisConnectWithTimeout(host.c_str(), port, five_seconds));
  if (!c || c->err) {
    error = c ? c->errstr : "cannot allocate a redis context";
    return nullptr;
  }
  redisSetTimeout(c.get(), five_seconds);
  return c;
}

// A task's work: plain sequential code, as it would be on a thread.
// Returns an error message, empty when every answer was right.
std::string client(const std::string& host, int port, int id, InFlight& in_flight) {
  std::string error;
  Context c = connect(host, port, error);
  if (!c) return error;
  std::string key = "redis_tasks:key:" + std::to_string(id);
  for (int i = 0; i < kRounds; ++i) {
    Reply incr = command(c.get(), in_flight, "INCR %s", kCounter.c_str());
    if (!incr || incr->type != REDIS_REPLY_INTEGER) return "INCR failed: " + std::string(c->errstr);
    std::string value = std::to_string(id) + "." + std::to_string(i);
    Reply set = command(c.get(), in_flight, "SET %s %s", key.c_str(), value.c_str());
    if (!set || set->type != REDIS_REPLY_STATUS) return "SET failed: " + std::string(c->errstr);
    Reply get = command(c.get(), in_flight, "GET %s", key.c_str());
    if (!get || get->type != REDIS_REPLY_STRING) return "GET failed: " + std::string(c->errstr);
    if (value != get->str) return "GET " + key + " gave " + get->str + ", not " + value;
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: redis_tasks HOST PORT [TASKS]\n");
    return 2;
  }
  std::string host = argv[1];
  int port = std::atoi(argv[2]);
  int tasks = argc == 4 ? std::atoi(argv[3]) : 100;
  if (port <= 0 || port > 65535 || tasks <= 0) {
    std::fprintf(stderr, "redis_tasks: PORT must be 1..65535 and TASKS above 0\n");
    return 2;
  }

  // Linked is not always in effect: a library earlier in the link order
  // that defines read() itself would win, and its calls would block.
  if (!fiberloop::hooks::status().in_effect) {
    std::fprintf(stderr, "redis_tasks: the hooks are linked but not in effect (docs/hooks.md)\n");
  }

  return fiberloop::run([&] {
    auto& loop = fiberloop::get_running_loop();
    std::string error;
    Context admin = connect(host, port, error);
    if (!admin) {
      std::fprintf(stderr, "redis_tasks: cannot connect to %s:%d: %s\n", host.c_str(), port, error.c_str());
      return 1;
    }
    InFlight in_flight;
    // The counter starts from nothing, so that its end value checks that
    // every INCR of every task arrived exactly once.
    Reply del = command(admin.get(), in_flight, "DEL %s", kCounter.c_str());

    auto before = fiberloop::hooks::stats();
    double start = loop.time();
    std::vector<fiberloop::Task<std::string>> clients;
    for (int id = 0; id < tasks; ++id) {
      clients.push_back(fiberloop::spawn(client, host, port, id, std::ref(in_flight)));
    }
    int failed = 0;
    for (auto& t : clients) {
      std::string e = fiberloop::await(t);
      if (!e.empty() && failed++ == 0) std::fprintf(stderr, "redis_tasks: %s\n", e.c_str());
    }
    double elapsed = loop.time() - start;
    auto after = fiberloop::hooks::stats();

    Reply counter = command(admin.get(), in_flight, "GET %s", kCounter.c_str());
    long long expected = static_cast<long long>(tasks) * kRounds;
    long long got = counter && counter->type == REDIS_REPLY_STRING ? std::atoll(counter->str) : -1;

    std::printf("redis_tasks: %d tasks, %lld commands in %.3f s on one thread\n", tasks,
                expected * 3, elapsed);
    std::printf("counter: %lld (expected %lld)\n", got, expected);
    std::printf("tasks failed: %d\n", failed);
    // The figure that shows the hooks at work: how many tasks were waiting
    // on Redis at the same moment (without the hooks, never more than 1).
    std::printf("most tasks inside a redis call at once: %d\n", in_flight.most);
    std::printf("waits on the loop instead of blocking: %llu\n",
                static_cast<unsigned long long>(after.waits - before.waits));
    return failed == 0 && got == expected ? 0 : 1;
  });
}
