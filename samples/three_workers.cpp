// three_workers: the seed's opening scenario, do([worker1, worker2, worker3]).
// Three plain functions run as tasks. Each waits — on timers, on a pipe
// becoming readable — and while one waits the others run. The times are
// printed in steps of 50 ms, so the interleaving reads the same on every run.
#include <fcntl.h>
#include <unistd.h>

#include <fiberloop/fiberloop.hpp>
#include <functional>
#include <iostream>
#include <string>
#include <system_error>
#include <vector>

namespace {

constexpr double kStep = 0.05;  // one tick of the story, in seconds
double started_at = 0;

void say(const std::string& who, const std::string& what) {
  double elapsed = fiberloop::get_running_loop().time() - started_at;
  std::cout << "[t=" << static_cast<int>(elapsed / kStep + 0.5) << "] " << who << ": " << what
            << "\n";
}

// wait_readable(fd) blocks the calling task — not the loop — until fd has data.
void wait_readable(int fd) {
  auto& loop = fiberloop::get_running_loop();
  auto ready = loop.create_future<void>();
  loop.add_reader(fd, [ready] {
    if (!ready.done()) ready.set_result();
  });
  struct StopWatching {
    fiberloop::EventLoop& loop;
    int fd;
    ~StopWatching() { loop.remove_reader(fd); }
  } stop{loop, fd};
  fiberloop::await(ready);
}

std::string read_some(int fd) {
  wait_readable(fd);
  char buf[64];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n < 0) throw std::system_error(errno, std::generic_category(), "read");
  return std::string(buf, static_cast<std::size_t>(n));
}

void write_all(int fd, const std::string& text) {
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    throw std::system_error(errno, std::generic_category(), "write");
  }
}

struct Pipe {
  int read_end, write_end;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
      throw std::system_error(errno, std::generic_category(), "pipe2");
    read_end = fds[0];
    write_end = fds[1];
  }
  ~Pipe() {
    ::close(read_end);
    ::close(write_end);
  }
};

Pipe* ping;  // worker1 -> worker2
Pipe* pong;  // worker2 -> worker1

// worker1 sleeps, sends a ping through a pipe, and waits for the answer.
void worker1() {
  say("worker1", "start, sleeping 3 ticks");
  fiberloop::sleep(3 * kStep);
  say("worker1", "writes 'ping', waits for the answer");
  write_all(ping->write_end, "ping");
  say("worker1", "got '" + read_some(pong->read_end) + "'");
}

// worker2 waits on the pipe, then takes its time to answer.
void worker2() {
  say("worker2", "start, waiting for the pipe");
  std::string message = read_some(ping->read_end);
  say("worker2", "read '" + message + "', thinking 2 ticks");
  fiberloop::sleep(2 * kStep);
  say("worker2", "writes 'pong'");
  write_all(pong->write_end, "pong");
}

// worker3 only keeps time.
void worker3() {
  say("worker3", "start");
  for (int i = 1; i <= 3; ++i) {
    fiberloop::sleep(2 * kStep);
    say("worker3", "tick " + std::to_string(i));
  }
}

// do_all is the seed's do(tasks): run every worker as a task and wait for all.
void do_all(const std::vector<std::function<void()>>& workers) {
  std::vector<fiberloop::Task<void>> tasks;
  for (const auto& w : workers) tasks.push_back(fiberloop::spawn(w));
  for (auto& t : tasks) fiberloop::await(t);
  say("main", "all workers done");
}

}  // namespace

int main() {
  Pipe a, b;
  ping = &a;
  pong = &b;
  fiberloop::run([] {
    started_at = fiberloop::get_running_loop().time();
    do_all({worker1, worker2, worker3});
  });
}
