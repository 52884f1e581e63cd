// stuck_tasks [--hang]: the task dump (EventLoop::dump_tasks) on a small
// program: a server on 127.0.0.1 with a client waiting for its answer, a
// worker waiting for a lock that a slow task holds, a pool of workers on a
// queue.
//
// Without arguments it prints the dump of those tasks once they are all
// waiting, then lets them finish and exits 0.
//
// With --hang it has a bug as well: two tasks each wait for the other's
// result, so the program never ends. It says so, and waits: send it
// SIGQUIT (`kill -QUIT PID`, or Ctrl-\ in a terminal) and it writes the
// dump to stderr, the cycle named at the end, and goes on waiting; Ctrl-C
// ends it. The same dump comes from any fiberloop::run() program started
// with FIBERLOOP_DUMP_SIGNAL=SIGQUIT.
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace net = fiberloop::net;

namespace {

// The server answers each line once it has "looked it up" (a sleep).
void answer_slowly(net::StreamReader reader, net::StreamWriter writer) {
  std::string line = reader.readline();
  fiberloop::sleep(0.2);
  writer.write("answer to " + line);
  writer.drain();
}

std::string ask(int port, const std::string& question) {
  auto [reader, writer] = net::open_connection("127.0.0.1", port);
  writer.write(question + "\n");
  writer.drain();
  return reader.readline();
}

void hold_lock_while_slow(fiberloop::Lock& lock) {
  std::lock_guard held(lock);
  fiberloop::sleep(0.2);
}

void update_under_lock(fiberloop::Lock& lock, int& shared) {
  std::lock_guard held(lock);
  ++shared;
}

void work_from(fiberloop::Queue<int>& jobs, int& done) {
  for (;;) {
    int job = jobs.get();
    if (job < 0) return;
    fiberloop::sleep(0.01 * job);
    ++done;
  }
}

// The bug of --hang: each half waits for the other.
int left_half_of(fiberloop::Task<int> right) { return fiberloop::await(right) + 1; }

int run_demo(bool hang) {
  fiberloop::Lock lock;
  int shared = 0, done = 0;
  fiberloop::Queue<int> jobs;
  net::Server server = net::start_server(answer_slowly, "127.0.0.1", 0);
  int port = server.sockets()[0].port();
  // A group: the tasks end (or are cancelled, on Ctrl-C) before the lock,
  // the queue and the counters they use go.
  fiberloop::task_group([&](fiberloop::TaskGroup& group) {
    group.spawn({.name = "client"}, [port] { return ask(port, "ping"); });
    group.spawn({.name = "slow holder"}, hold_lock_while_slow, std::ref(lock));
    group.spawn({.name = "updater"}, update_under_lock, std::ref(lock), std::ref(shared));
    for (int i = 0; i < 2; ++i) {
      group.spawn({.name = "worker " + std::to_string(i)}, work_from, std::ref(jobs),
                  std::ref(done));
    }
    // Each half holds its own handle of the other: the future an await is
    // given must outlive the wait.
    auto left = std::make_shared<std::optional<fiberloop::Task<int>>>();
    if (hang) {
      auto right = group.spawn({.name = "right half"}, [left] {
        fiberloop::Task<int> awaited = **left;
        return fiberloop::await(awaited) * 2;
      });
      *left = group.spawn({.name = "left half"}, left_half_of, right);
    }
    fiberloop::sleep(0.05);  // everyone is waiting now

    auto& loop = fiberloop::get_running_loop();
    if (hang) {
      std::cout << "stuck_tasks: stuck on purpose (pid " << ::getpid()
                << "): kill -QUIT for the dump, Ctrl-C to end" << std::endl;
      loop.enable_dump_on_signal(SIGQUIT);
      fiberloop::Task<int> awaited = **left;
      fiberloop::await(awaited);  // never
    }
    loop.dump_tasks(std::cout);
    for (int job = 1; job <= 4; ++job) jobs.put(job);
    for (int i = 0; i < 2; ++i) jobs.put(-1);
  });
  server.close();
  std::cout << "all done: " << done << " jobs, shared = " << shared << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool hang = argc > 1 && std::strcmp(argv[1], "--hang") == 0;
  if (argc > 2 || (argc == 2 && !hang)) {
    std::cerr << "usage: stuck_tasks [--hang]\n";
    return 2;
  }
  try {
    return fiberloop::run(run_demo, hang);
  } catch (const fiberloop::KeyboardInterrupt&) {
    return fiberloop::KeyboardInterrupt::kExitStatus;
  }
}
