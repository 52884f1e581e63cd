// The task dump (EventLoop::dump_tasks): every wait kind with its fields, in
// text and in JSON parsed back; stacks that name the waiting function;
// cycles; the dump on a signal, from a forked child.
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <fstream>
#include <future>
#include <optional>
#include <thread>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "death.hpp"
#include "fd_helpers.hpp"
#include "loop_fixture.hpp"

namespace pt = boost::property_tree;
using fiberloop::EventLoop;

// The lines the waits are made on, and functions with external linkage and
// unmistakable names (the executable exports its symbols: the dump names
// its frames with dladdr).
int sleep_line = 0;
int read_line = 0;
// (The empty asm after each wait keeps it from being a tail call, which
// would take the function's frame off the stack.)
[[gnu::noinline]] void dump_test_sleeps_for_long() {
  sleep_line = __LINE__; fiberloop::sleep(1000);
  asm volatile("" ::: "memory");
}
void dump_test_sleep_for(double seconds) { fiberloop::sleep(seconds); }
[[gnu::noinline]] void dump_test_reads(int fd) {
  read_line = __LINE__; fiberloop::wait_readable(fd);
  asm volatile("" ::: "memory");
}

namespace {

// TcpPair is a connected TCP pair on 127.0.0.1, non-blocking.
struct TcpPair {
  int client = -1, server = -1, port = 0;
  TcpPair() {
    int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    BOOST_REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    BOOST_REQUIRE(::listen(listener, 1) == 0);
    BOOST_REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    client = ::socket(AF_INET, SOCK_STREAM, 0);
    BOOST_REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    server = ::accept(listener, nullptr, nullptr);
    BOOST_REQUIRE(server >= 0);
    ::close(listener);
    sockaddr_in peer{};
    len = sizeof peer;
    ::getsockname(client, reinterpret_cast<sockaddr*>(&peer), &len);
    port = ntohs(peer.sin_port);  // what the server side sees as its peer
    ::fcntl(client, F_SETFL, O_NONBLOCK);
    ::fcntl(server, F_SETFL, O_NONBLOCK);
  }
  ~TcpPair() {
    ::close(client);
    ::close(server);
  }
};

// by_name(doc) indexes the JSON dump's tasks by name.
std::map<std::string, pt::ptree> by_name(const pt::ptree& doc) {
  std::map<std::string, pt::ptree> tasks;
  for (const auto& [_, t] : doc.get_child("tasks")) tasks[t.get<std::string>("name")] = t;
  return tasks;
}

pt::ptree parse(const std::string& json) {
  std::istringstream in(json);
  pt::ptree doc;
  pt::read_json(in, doc);
  return doc;
}

bool stack_names(const pt::ptree& task, const std::string& function) {
  for (const auto& [_, frame] : task.get_child("stack")) {
    if (frame.get<std::string>("function", "").find(function) != std::string::npos) return true;
  }
  return false;
}

template <class Fn>
fiberloop::AnyTask named(const char* name, Fn fn) {
  return fiberloop::AnyTask(fiberloop::get_running_loop().create_task({.name = name}, fn));
}

// settle(): a few iterations, for every task started to reach its wait.
void settle() {
  for (int i = 0; i < 5; ++i) fiberloop::sleep(0);
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(task_dump, LoopFixture)

BOOST_AUTO_TEST_CASE(every_wait_kind_is_named_with_its_fields) {
  run([this] {
    TcpPair tcp;
    // The read end of a pipe is never writable: a wait for it stays a wait,
    // where a filled socket can drain into its peer on a loaded machine.
    Pair never_writable = make_pipe();
    fiberloop::Lock lock;
    lock.acquire();
    fiberloop::Queue<int> queue;
    fiberloop::Event event;
    fiberloop::Condition cond;
    fiberloop::Semaphore semaphore(0);
    fiberloop::Barrier barrier(2);
    std::promise<void> release_thread;
    std::shared_future<void> released = release_thread.get_future().share();
    auto never = loop.create_future<int>();

    std::vector<fiberloop::AnyTask> tasks;
    auto sleeper = loop.create_task({.name = "sleeper"}, dump_test_sleeps_for_long);
    tasks.push_back(fiberloop::AnyTask(sleeper));
    tasks.push_back(named("reader", [&] { dump_test_reads(tcp.server); }));
    tasks.push_back(named("writer", [&] { fiberloop::wait_writable(never_writable.r.get()); }));
    tasks.push_back(named("locker", [&] { lock.acquire(); lock.release(); }));
    tasks.push_back(named("getter", [&] { queue.get(); }));
    tasks.push_back(named("event", [&] { event.wait(); }));
    tasks.push_back(named("condition", [&] {
      std::lock_guard held(cond);
      cond.wait();
    }));
    tasks.push_back(named("semaphore", [&] { semaphore.acquire(); }));
    tasks.push_back(named("barrier", [&] { barrier.wait(); }));
    tasks.push_back(named("awaiter", [sleeper] { fiberloop::await(sleeper); }));
    tasks.push_back(named("future", [never] { fiberloop::await(never); }));
    tasks.push_back(named("threaded", [released] { fiberloop::to_thread([released] { released.wait(); }); }));
    tasks.push_back(named("group", [] {
      fiberloop::task_group([](fiberloop::TaskGroup& g) {
        g.spawn({.name = "child"}, [] { fiberloop::sleep(1000); });
      });
    }));
    tasks.push_back(named("gatherer", [] {
      auto inner = fiberloop::get_running_loop().create_task({.name = "gathered"},
                                                             [] { fiberloop::sleep(1000); });
      fiberloop::gather(inner);
    }));
    settle();
    auto fresh = named("fresh", [] {});

    // An exception while inspecting must not skip the clean-up below: the
    // tasks wait on this frame's locals.
    try {
      std::ostringstream json, text;
      loop.dump_tasks(json, fiberloop::DumpFormat::json);
      loop.dump_tasks(text);
      BOOST_TEST_MESSAGE(text.str());
      pt::ptree doc = parse(json.str());
      BOOST_TEST(doc.get<std::string>("format") == "fiberloop-task-dump");
      BOOST_TEST(doc.get<int>("version") == 1);
      auto t = by_name(doc);

      BOOST_TEST(t["sleeper"].get<std::string>("state") == "waiting");
      BOOST_TEST(t["sleeper"].get<std::string>("wait.kind") == "sleep");
      BOOST_TEST(t["sleeper"].get<std::string>("wait.call") == "sleep()");
      BOOST_TEST(t["sleeper"].get<int>("wait.line") == sleep_line);
      BOOST_TEST(t["sleeper"].get<std::string>("wait.file").find("task_dump_test.cpp") !=
                 std::string::npos);
      BOOST_TEST(t["sleeper"].get<std::string>("wait.function").find("dump_test_sleeps_for_long") !=
                 std::string::npos);
      BOOST_TEST(t["sleeper"].get<double>("wait.deadline") >= loop.time() + 990);
      BOOST_TEST(t["sleeper"].get<double>("wait.waited") >= 0.0);
      BOOST_TEST(stack_names(t["sleeper"], "dump_test_sleeps_for_long"));

      BOOST_TEST(t["reader"].get<std::string>("wait.kind") == "fd");
      BOOST_TEST(t["reader"].get<int>("wait.fd") == tcp.server);
      BOOST_TEST(t["reader"].get<std::string>("wait.direction") == "readable");
      BOOST_TEST(t["reader"].get<std::string>("wait.peer") ==
                 "127.0.0.1:" + std::to_string(tcp.port));
      BOOST_TEST(t["reader"].get<int>("wait.line") == read_line);
      BOOST_TEST(stack_names(t["reader"], "dump_test_reads"));
      BOOST_TEST(t["writer"].get<std::string>("wait.direction") == "writable");
      BOOST_TEST(t["writer"].get<int>("wait.fd") == never_writable.r.get());

      const std::pair<const char*, const char*> primitives[] = {
          {"locker", "lock"},        {"getter", "queue"},     {"event", "event"},
          {"condition", "condition"}, {"semaphore", "semaphore"}, {"barrier", "barrier"},
          {"future", "future"},      {"threaded", "to_thread"}, {"group", "task_group"},
          {"gatherer", "gather"},    {"child", "sleep"}};
      for (auto [name, kind] : primitives) {
        BOOST_TEST_CONTEXT(name) {
          BOOST_TEST(t[name].get<std::string>("state") == "waiting");
          BOOST_TEST(t[name].get<std::string>("wait.kind") == kind);
          // The library's own waits (a group's end, gather, to_thread) are
          // made inside the library: their line is the library's.
          std::string k = kind;
          bool users_line = k != "task_group" && k != "gather" && k != "to_thread";
          if (users_line)
            BOOST_TEST(t[name].get<std::string>("wait.file").find("task_dump_test.cpp") !=
                       std::string::npos);
        }
      }
      BOOST_TEST(t["locker"].get<std::string>("wait.call") == "Lock.acquire()");
      BOOST_TEST(t["barrier"].get<std::string>("wait.call") == "Barrier.wait()");
      BOOST_TEST(t["awaiter"].get<std::string>("wait.kind") == "task");
      BOOST_TEST(t["awaiter"].get<std::string>("wait.task.name") == "sleeper");
      BOOST_TEST(t["sleeper"].get_child("awaited_by").size() == 1u);
      BOOST_TEST(t["sleeper"].get_child("awaited_by").front().second.get<std::string>("name") ==
                 "awaiter");
      BOOST_TEST(t["child"].get<std::string>("parent.name") == "group");
      BOOST_TEST(t["gathered"].get<std::string>("wait.kind") == "sleep");

      BOOST_TEST(t["fresh"].get<std::string>("state") == "ready");
      BOOST_TEST(t["fresh"].get_child("stack").empty());
      // The dumping task itself: running, its own stack.
      auto& self = t[fiberloop::current_task()->get_name()];
      BOOST_TEST(self.get<std::string>("state") == "running");
      BOOST_TEST(!self.get_child("stack").empty());
      BOOST_TEST(doc.get_child("cycles").empty());

      // The text names the same things, a line per task.
      std::string s = text.str();
      BOOST_TEST(s.find("\"sleeper\": waiting") != std::string::npos);
      BOOST_TEST(s.find("on sleep until") != std::string::npos);
      BOOST_TEST(s.find("readable (peer 127.0.0.1:" + std::to_string(tcp.port) + ")") !=
                 std::string::npos);
      BOOST_TEST(s.find("in Lock.acquire() at") != std::string::npos);
      BOOST_TEST(s.find("awaited by: Task") != std::string::npos);
      BOOST_TEST(s.find("dump_test_sleeps_for_long") != std::string::npos);
      BOOST_TEST(s.find("no cycles") != std::string::npos);
    } catch (const std::exception& e) {
      BOOST_ERROR("inspecting the dump threw: " << e.what());
    }

    // Everything goes on as before the dump.
    lock.release();
    queue.put_nowait(1);
    event.set();
    {
      std::lock_guard held(cond);
      cond.notify_all();
    }
    semaphore.release();
    never.set_result(1);
    release_thread.set_value();
    char byte = 'x';
    BOOST_REQUIRE(::write(tcp.client, &byte, 1) == 1);
    for (auto& task : tasks) {
      if (!task.done() && task.get_name() != "reader" && task.get_name() != "locker" &&
          task.get_name() != "getter" && task.get_name() != "event" &&
          task.get_name() != "condition" && task.get_name() != "semaphore" &&
          task.get_name() != "future" && task.get_name() != "threaded")
        task.cancel();
    }
    double end = loop.time() + 5;
    auto pending = [&] {
      for (auto& task : tasks) {
        if (!task.done()) return true;
      }
      return !fresh.done();
    };
    while (pending() && loop.time() < end) fiberloop::sleep(0.001);
    BOOST_TEST(!pending());
    for (const char* name : {"reader", "locker", "getter", "event", "condition", "semaphore",
                             "future", "threaded"}) {
      for (auto& task : tasks) {
        if (task.get_name() == name) BOOST_TEST_CONTEXT(name) { BOOST_TEST(!task.cancelled()); }
      }
    }
  });
}

// A task awaiting a task awaiting the first: the dump reports the cycle.
BOOST_AUTO_TEST_CASE(tasks_awaiting_each_other_are_reported_as_a_cycle) {
  EventLoop cyclic;
  std::vector<std::string> destroyed;
  cyclic.set_exception_handler([&](EventLoop&, const fiberloop::ExceptionContext& ctx) {
    destroyed.push_back(ctx.message);
  });
  std::optional<fiberloop::Task<void>> a_task;
  auto b = cyclic.create_task({.name = "b"}, [&] {
    fiberloop::Task<void> a = *a_task;  // its own handle: a_task may go first
    fiberloop::await(a);
  });
  a_task = cyclic.create_task({.name = "a"}, [b] { fiberloop::await(b); });
  auto loner = cyclic.create_task({.name = "loner"}, [] { fiberloop::sleep(1000); });
  cyclic.run_until_complete(settle);
  std::ostringstream json, text;
  cyclic.dump_tasks(json, fiberloop::DumpFormat::json);
  cyclic.dump_tasks(text);
  pt::ptree doc = parse(json.str());
  BOOST_REQUIRE_EQUAL(doc.get_child("cycles").size(), 1u);
  std::vector<std::string> names;
  for (const auto& [_, t] : doc.get_child("cycles").front().second)
    names.push_back(t.get<std::string>("name"));
  BOOST_REQUIRE_EQUAL(names.size(), 3u);
  BOOST_TEST(names.front() == names.back());
  BOOST_TEST((names[0] == "a" || names[0] == "b"));
  BOOST_TEST(names[1] != names[0]);
  BOOST_TEST(text.str().find("cycle: Task") != std::string::npos);
  BOOST_TEST(text.str().find("\"loner\"") != std::string::npos);
  // A cancel breaks the cycle rather than chase itself round it: both end.
  auto a = *a_task;
  a.cancel();
  cyclic.run_until_complete(settle);
  BOOST_TEST(a.cancelled());
  BOOST_TEST(b.cancelled());
  loner.cancel();
  BOOST_CHECK_THROW(cyclic.run_until_complete(loner), fiberloop::CancelledError);
  cyclic.close();
  BOOST_TEST(destroyed.empty());
}

// The same cycle under run() and Ctrl-C: the main task awaits one half; the
// interrupt unwinds all three and run() throws KeyboardInterrupt.
BOOST_AUTO_TEST_CASE(ctrl_c_unwinds_a_cycle_of_awaits) {
  Death d = die_in_child([] {
    try {
      fiberloop::run([] {
        auto& loop = fiberloop::get_running_loop();
        // Each task holds its own handle of the task it awaits: the future
        // an await is given must outlive the wait.
        auto left = std::make_shared<std::optional<fiberloop::Task<void>>>();
        auto right = loop.create_task([left] {
          fiberloop::Task<void> awaited = **left;
          fiberloop::await(awaited);
        });
        *left = loop.create_task([right] { fiberloop::await(right); });
        loop.call_later(0.01, [] { ::kill(::getpid(), SIGINT); });
        fiberloop::Task<void> awaited = **left;
        fiberloop::await(awaited);
      });
    } catch (const fiberloop::KeyboardInterrupt&) {
      std::fprintf(stderr, "interrupted\n");
      ::_exit(3);
    }
  });
  BOOST_TEST(d.signal == 0);
  BOOST_TEST(d.exit_status == 3);
  BOOST_TEST(d.stderr_text.find("interrupted") != std::string::npos, d.stderr_text);
}

BOOST_AUTO_TEST_CASE(a_dump_from_a_callback_shows_every_task_parked) {
  auto sleeper = loop.create_task({.name = "sleeper"}, dump_test_sleeps_for_long);
  std::string text;
  loop.call_later(0.01, [&] {
    std::ostringstream out;
    loop.dump_tasks(out);
    text = out.str();
    sleeper.cancel();
  });
  BOOST_CHECK_THROW(loop.run_until_complete(sleeper), fiberloop::CancelledError);
  BOOST_TEST(text.find("\"sleeper\": waiting") != std::string::npos);
  BOOST_TEST(text.find("running") == std::string::npos);
  BOOST_TEST(text.find("dump_test_sleeps_for_long()") != std::string::npos);
}

// A task state recycled from a TaskGroup's child (the same function type,
// finished) carries nothing of that run into the next task's dump.
BOOST_AUTO_TEST_CASE(a_recycled_task_state_keeps_no_parent_and_no_wait_of_its_last_run) {
  run([this] {
    fiberloop::task_group([](fiberloop::TaskGroup& group) { group.spawn(dump_test_sleep_for, 0.0); });
    auto orphan = loop.create_task({.name = "orphan"}, dump_test_sleep_for, 1000.0);
    auto fresh = loop.create_task({.name = "fresh"}, dump_test_sleep_for, 0.0);
    fiberloop::sleep(0);  // orphan parks; then fresh, recycled from orphan's type, is queued anew
    std::ostringstream json;
    loop.dump_tasks(json, fiberloop::DumpFormat::json);
    auto t = by_name(parse(json.str()));
    BOOST_TEST(t["orphan"].get<std::string>("state") == "waiting");
    BOOST_TEST(t["orphan"].get_child("parent").empty());  // JSON null
    orphan.cancel();
    BOOST_CHECK_THROW(fiberloop::await(orphan), fiberloop::CancelledError);
    fiberloop::await(fresh);
  });
}

BOOST_AUTO_TEST_CASE(a_name_that_needs_escapes_survives_the_json) {
  const std::string odd = "he said \"hi\"\n\tback\\slash \x01";
  auto sleeper = loop.create_task({.name = odd}, [] { fiberloop::sleep(1000); });
  loop.run_until_complete(settle);
  std::ostringstream json;
  loop.dump_tasks(json, fiberloop::DumpFormat::json);
  BOOST_TEST(by_name(parse(json.str())).count(odd) == 1u);
  sleeper.cancel();
  BOOST_CHECK_THROW(loop.run_until_complete(sleeper), fiberloop::CancelledError);
}

BOOST_AUTO_TEST_CASE(a_dump_from_another_thread_is_refused) {
  std::ostringstream out;
  std::thread other([&] {
    BOOST_CHECK_THROW(loop.dump_tasks(out), fiberloop::RuntimeError);
  });
  other.join();
  BOOST_TEST(out.str().empty());
}

// A program run with FIBERLOOP_DUMP_SIGNAL=SIGQUIT writes the dump to stderr
// on SIGQUIT and carries on: the task that was dumped finishes afterwards.
BOOST_AUTO_TEST_CASE(sigquit_dumps_the_tasks_of_run_and_the_program_goes_on) {
  Death d = die_in_child([] {
    ::setenv("FIBERLOOP_DUMP_SIGNAL", "SIGQUIT", 1);
    int result = fiberloop::run([] {
      auto sleeper = fiberloop::get_running_loop().create_task(
          {.name = "sleeper"}, [] { fiberloop::sleep(0.05); return 42; });
      fiberloop::sleep(0.01);
      ::kill(::getpid(), SIGQUIT);
      return fiberloop::await(sleeper);
    });
    std::fprintf(stderr, "result %d\n", result);
  });
  BOOST_TEST(d.signal == 0);
  BOOST_TEST(d.exit_status == 0);
  BOOST_TEST(d.stderr_text.find("fiberloop: 2 tasks at loop time") != std::string::npos,
             d.stderr_text);
  BOOST_TEST(d.stderr_text.find("\"sleeper\": waiting") != std::string::npos);
  BOOST_TEST(d.stderr_text.find("on sleep until") != std::string::npos);
  BOOST_TEST(d.stderr_text.find("result 42") != std::string::npos);
}

// The same signal into a file, as JSON: FIBERLOOP_DUMP_FILE.
BOOST_AUTO_TEST_CASE(the_signal_dump_can_go_to_a_file_as_json) {
  char path[] = "/tmp/fiberloop-dump-XXXXXX";
  int fd = ::mkstemp(path);
  BOOST_REQUIRE(fd >= 0);
  ::close(fd);
  Death d = die_in_child([&] {
    fiberloop::run([&] {
      auto& loop = fiberloop::get_running_loop();
      loop.enable_dump_on_signal(SIGUSR2, path, fiberloop::DumpFormat::json);
      auto sleeper = loop.create_task({.name = "sleeper"}, [] { fiberloop::sleep(0.05); });
      fiberloop::sleep(0.01);
      ::kill(::getpid(), SIGUSR2);
      fiberloop::await(sleeper);
    });
  });
  BOOST_TEST(d.exit_status == 0);
  std::ifstream in(path);
  std::stringstream json;
  json << in.rdbuf();
  ::unlink(path);
  auto t = by_name(parse(json.str()));
  BOOST_TEST(t["sleeper"].get<std::string>("wait.kind") == "sleep");
}

BOOST_AUTO_TEST_CASE(a_dump_signal_that_is_no_signal_is_named_in_the_error) {
  ::setenv("FIBERLOOP_DUMP_SIGNAL", "SIGNOPE", 1);
  try {
    fiberloop::run([] {});
    BOOST_FAIL("run() accepted FIBERLOOP_DUMP_SIGNAL=SIGNOPE");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string(e.what()).find("FIBERLOOP_DUMP_SIGNAL=SIGNOPE") != std::string::npos);
  }
  ::setenv("FIBERLOOP_DUMP_SIGNAL", "SIGKILL", 1);
  BOOST_CHECK_THROW(fiberloop::run([] {}), std::invalid_argument);  // add_signal_handler's refusal
  ::unsetenv("FIBERLOOP_DUMP_SIGNAL");
  BOOST_TEST(fiberloop::run([] { return 7; }) == 7);
}

BOOST_AUTO_TEST_SUITE_END()
