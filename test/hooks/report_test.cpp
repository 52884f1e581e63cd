// What the hooks do not cover still shows (docs/hooks.md): a task blocked in
// a call no hook stands in front of (a mutex, a raw system call, a static's
// initialization guard) holds the loop thread, and the stall watchdog names
// the task and the blocking frame; the same wait made with a hooked call is
// no stall. And the start-up check: a program in which another object
// defines a hooked call ahead of the hooks says so on stderr and in
// status(). This file is built twice (test/hooks/meson.build): as
// hooks_report_test, linked normally, and with FIBERLOOP_REPORT_SHADOWED as
// hooks_report_shadowed_test, linked with libshadow_read (shadow_read.cpp)
// ahead of the hooks. Each stalling case runs in a forked child whose
// stderr the parent reads (test/death.hpp).
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <fiberloop/hooks.hpp>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "../death.hpp"
#include "../stall_report.hpp"

#ifdef FIBERLOOP_REPORT_SHADOWED
// shadow_read.cpp: how many reads went through its read().
extern "C" long fiberloop_shadow_read_calls();
#endif

namespace {

// the_status() is status() with its lists joined, for the messages.
struct Joined {
  fiberloop::hooks::Status status;
  std::string text;
};
Joined the_status() {
  Joined j{fiberloop::hooks::status(), {}};
  for (std::size_t i = 0; i < j.status.lost.size(); ++i)
    j.text += j.status.lost[i] + " -> " + j.status.lost_to[i] + "; ";
  return j;
}

// SelfRun is how a fresh exec of this test program ended.
struct SelfRun {
  bool exited = false;
  int status = -1;
  std::string stderr_text;
};

// run_self(test) execs this program to run one test case, with
// FIBERLOOP_DEBUG=1 so that a release build of the hooks checks too, and
// captures its stderr: what the hooks' constructor prints happens before
// main, in a process of its own. An alarm (kept across exec) bounds it.
SelfRun run_self(const std::string& test) {
  int pipefd[2];
  BOOST_REQUIRE_EQUAL(::pipe2(pipefd, O_CLOEXEC), 0);
  std::string arg = "--run_test=" + test;
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(pipefd[1], STDERR_FILENO);
    ::setenv("FIBERLOOP_DEBUG", "1", 1);
    ::alarm(30);
    char* argv[] = {const_cast<char*>("report_test"), arg.data(), nullptr};
    ::execv("/proc/self/exe", argv);
    ::_exit(127);
  }
  ::close(pipefd[1]);
  SelfRun run;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n > 0) {
      run.stderr_text.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  run.exited = WIFEXITED(status);
  run.status = run.exited ? WEXITSTATUS(status) : WTERMSIG(status);
  return run;
}

constexpr const char* kStartupMessage = "fiberloop-hooks: linked but not in effect for ";

}  // namespace

BOOST_AUTO_TEST_SUITE(startup_check)

#ifndef FIBERLOOP_REPORT_SHADOWED

BOOST_AUTO_TEST_CASE(a_normally_linked_program_has_the_hooks_in_effect) {
  Joined j = the_status();
  BOOST_TEST(j.status.in_effect, j.text);
  BOOST_TEST(j.status.lost.empty(), j.text);
  BOOST_TEST(j.status.lost_to.empty(), j.text);
}

BOOST_AUTO_TEST_CASE(a_normally_linked_program_prints_nothing_at_start_up) {
  SelfRun run = run_self("startup_check/a_normally_linked_program_has_the_hooks_in_effect");
  BOOST_TEST(run.exited, "killed by signal " << run.status << ": " << run.stderr_text);
  BOOST_TEST(run.status == 0, run.stderr_text);
  BOOST_TEST(count(run.stderr_text, "fiberloop-hooks") == 0u, run.stderr_text);
}

#else  // linked with libshadow_read ahead of libfiberloop-hooks

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

BOOST_AUTO_TEST_CASE(read_defined_ahead_of_the_hooks_is_lost_to_that_library) {
  Joined j = the_status();
  BOOST_TEST(!j.status.in_effect, j.text);
  BOOST_REQUIRE_EQUAL(j.status.lost.size(), j.status.lost_to.size());
  // Only read: the shadow library defines nothing else of the hooks'.
  BOOST_REQUIRE_EQUAL(j.status.lost.size(), 1u);
  BOOST_TEST(j.status.lost[0] == "read", j.text);
  BOOST_TEST(ends_with(j.status.lost_to[0], "/libshadow_read.so"), j.text);
  // And the program's read() really is the shadow's: the order the check
  // reports is the order the dynamic linker uses.
  long before = fiberloop_shadow_read_calls();
  int p[2];
  BOOST_REQUIRE_EQUAL(::pipe(p), 0);
  char byte = 'x';
  BOOST_REQUIRE_EQUAL(::write(p[1], &byte, 1), 1);
  BOOST_REQUIRE_EQUAL(::read(p[0], &byte, 1), 1);
  ::close(p[0]);
  ::close(p[1]);
  BOOST_TEST(fiberloop_shadow_read_calls() == before + 1);
}

BOOST_AUTO_TEST_CASE(the_start_up_check_names_read_and_the_library_on_stderr) {
  SelfRun run = run_self("startup_check/read_defined_ahead_of_the_hooks_is_lost_to_that_library");
  BOOST_TEST(run.exited, "killed by signal " << run.status << ": " << run.stderr_text);
  BOOST_TEST(run.status == 0, run.stderr_text);
  BOOST_TEST(count(run.stderr_text, kStartupMessage) == 1u, run.stderr_text);
  auto at = run.stderr_text.find(std::string(kStartupMessage) + "read (");
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, run.stderr_text);
  auto line_end = run.stderr_text.find('\n', at);
  std::string line = run.stderr_text.substr(at, line_end - at);
  BOOST_TEST(line.find("/libshadow_read.so)") != std::string::npos, line);
  BOOST_TEST(line.find("block the loop") != std::string::npos, line);
}

#endif

BOOST_AUTO_TEST_SUITE_END()

#ifndef FIBERLOOP_REPORT_SHADOWED
// The functions the backtraces must name: external linkage, kept out of
// line, and exported (export_dynamic in meson.build) so that dladdr can.
int fiberloop_report_locks_a_held_mutex(pthread_mutex_t* mutex);
long fiberloop_report_reads_by_raw_syscall(int fd);
long fiberloop_report_reads_by_read(int fd);
int fiberloop_report_uses_a_static();
int fiberloop_report_constructs_slowly();

namespace {

// How long the other thread holds what the task waits for: several times
// the stall threshold, and past the quiet cases' threshold too.
constexpr auto kHold = std::chrono::milliseconds(600);
constexpr double kThreshold = 0.1;
// The quiet cases' threshold: well above a scheduling hiccup of the shared
// test machine (as stall_watchdog_test's), and still half the hold.
constexpr double kQuietThreshold = 0.3;

std::atomic<bool> constructing{false};

}  // namespace

[[gnu::noinline]] int fiberloop_report_locks_a_held_mutex(pthread_mutex_t* mutex) {
  if (::pthread_mutex_lock(mutex) != 0) return -1;
  ::pthread_mutex_unlock(mutex);
  asm volatile("" ::: "memory");  // no tail call: this frame stays on the stack
  return 1;
}

// The watchdog's signal is SA_RESTART, so the kernel restarts the read; a
// program must loop on EINTR all the same.
[[gnu::noinline]] long fiberloop_report_reads_by_raw_syscall(int fd) {
  char byte = 0;
  long r;
  do {
    r = ::syscall(SYS_read, fd, &byte, 1);
  } while (r < 0 && errno == EINTR);
  asm volatile("" ::: "memory");
  return r;
}

[[gnu::noinline]] long fiberloop_report_reads_by_read(int fd) {
  char byte = 0;
  ssize_t r = ::read(fd, &byte, 1);
  asm volatile("" ::: "memory");
  return r;
}

// Runs on the other thread, inside the static's initialization: the task
// that reaches the static meanwhile waits in __cxa_guard_acquire.
[[gnu::noinline]] int fiberloop_report_constructs_slowly() {
  constructing.store(true);
  std::this_thread::sleep_for(kHold);  // not a task: libc's own sleep
  asm volatile("" ::: "memory");
  return 42;
}

[[gnu::noinline]] int fiberloop_report_uses_a_static() {
  static const int value = fiberloop_report_constructs_slowly();
  asm volatile("" ::: "memory");
  return value;
}

namespace {

using fiberloop::EventLoop;

// fail(why) ends a child with its reason on stderr, which the parent shows.
[[noreturn]] void fail(const std::string& why) {
  say("child: " + why + "\n");
  ::_exit(3);
}

// watched(loop, threshold) turns the watchdog on and has every exception
// handler report written to stderr as END[message|task=name]END.
void watched(EventLoop& loop, double threshold) {
  loop.set_stall_threshold(threshold);
  loop.set_exception_handler([](EventLoop&, const fiberloop::ExceptionContext& ctx) {
    say(kEndOpen + ctx.message + "|task=" + ctx.task + "]END\n");
  });
}

// until(flag) waits, bounded, for another thread to set flag: not a task,
// so a plain wait on the child's main thread.
void until(const std::atomic<bool>& flag) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!flag.load()) {
    if (std::chrono::steady_clock::now() > deadline) fail("the other thread never started");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// frames(report) are the names of a backtrace's frames, innermost first,
// from its lines "#N 0xADDRESS NAME+0xOFFSET (+0xOFFSET OBJECT)".
std::vector<std::string> frames(const std::string& report) {
  std::vector<std::string> names;
  for (std::size_t at = report.find('#'); at != std::string::npos; at = report.find('#', at + 1)) {
    auto eol = report.find('\n', at);
    std::string line = report.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
    auto address = line.find(" 0x");
    if (address == std::string::npos) continue;
    auto name_at = line.find(' ', address + 1);
    auto object = line.rfind(" (+0x");
    if (name_at == std::string::npos || object == std::string::npos || object <= name_at) continue;
    std::string name = line.substr(name_at + 1, object - name_at - 1);
    auto offset = name.rfind("+0x");
    names.push_back(offset == std::string::npos ? name : name.substr(0, offset));
  }
  return names;
}

// first_frame(names, pred) is the index of the first frame pred accepts, or -1.
template <class Pred>
long first_frame(const std::vector<std::string>& names, Pred pred) {
  for (std::size_t i = 0; i < names.size(); ++i)
    if (pred(names[i])) return static_cast<long>(i);
  return -1;
}

std::string listed(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += "\n  " + n;
  return s;
}

// check_stall(d, task, blocking, caller) checks a child that stalled once:
// one report at detection and one at the end, both naming the task, and
// both backtraces with a frame `blocking` accepts inside one of `caller`.
template <class Blocking>
void check_stall(const Death& d, const std::string& task, Blocking blocking,
                 const std::string& caller) {
  const std::string& all = d.stderr_text;
  BOOST_TEST(d.signal == 0, "died of signal " << d.signal << ": " << all);
  BOOST_TEST(d.exit_status == 0, all);
  BOOST_TEST(count(all, kDetected) == 1u, all);
  BOOST_TEST(count(all, kEndOpen) == 1u, all);
  std::string detection = between(all, kDetected, kEndOpen);
  std::string end = between(all, kEndOpen, "]END");
  BOOST_TEST(detection.find("Task '" + task + "' has held the loop thread for ") == 0, all);
  BOOST_TEST(end.find("Executing <Task '" + task + "' step> took ") == 0, all);
  BOOST_TEST(end.find("|task=" + task) != std::string::npos, all);
  if (!kBacktraceExpected) return;
  for (const std::string* report : {&detection, &end}) {
    std::vector<std::string> names = frames(*report);
    long inner = first_frame(names, blocking);
    long outer = first_frame(names, [&](const std::string& n) { return n.find(caller) == 0; });
    BOOST_TEST(inner >= 0, "no blocking frame in" << listed(names) << "\n" << all);
    BOOST_TEST(outer >= 0, "no " << caller << " in" << listed(names) << "\n" << all);
    BOOST_TEST(inner < outer, "the blocking frame is not inside " << caller << listed(names));
  }
}

void check_quiet(const Death& d) {
  BOOST_TEST(d.signal == 0, "died of signal " << d.signal << ": " << d.stderr_text);
  BOOST_TEST(d.exit_status == 0, d.stderr_text);
  BOOST_TEST(count(d.stderr_text, kDetected) == 0u, d.stderr_text);
  BOOST_TEST(count(d.stderr_text, kEndOpen) == 0u, d.stderr_text);
}

// A blocking pipe, as C code makes it: the hooks wait on it in a task.
struct BlockingPipe {
  int r = -1, w = -1;
  BlockingPipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail("pipe2");
    r = p[0];
    w = p[1];
  }
  ~BlockingPipe() {
    ::close(r);
    ::close(w);
  }
};

// write_later(pipe) is a thread that writes one byte after kHold.
std::thread write_later(const BlockingPipe& pipe) {
  return std::thread([w = pipe.w] {
    std::this_thread::sleep_for(kHold);
    char byte = 'x';
    if (::write(w, &byte, 1) != 1) fail("write");
  });
}

fiberloop::TaskOptions named(const char* name) { return fiberloop::TaskOptions{.name = name}; }

}  // namespace

BOOST_AUTO_TEST_SUITE(unhooked_calls)

BOOST_AUTO_TEST_CASE(a_task_blocked_on_a_mutex_another_thread_holds_is_reported) {
  Death d = die_in_child([] {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    std::atomic<bool> held{false};
    std::thread holder([&] {
      ::pthread_mutex_lock(&mutex);
      held.store(true);
      std::this_thread::sleep_for(kHold);
      ::pthread_mutex_unlock(&mutex);
    });
    until(held);
    EventLoop loop;
    watched(loop, kThreshold);
    int r = loop.run_until_complete(loop.create_task(
        named("mutex_waiter"), [&] { return fiberloop_report_locks_a_held_mutex(&mutex); }));
    holder.join();
    if (r != 1) fail("pthread_mutex_lock failed");
  });
  check_stall(d, "mutex_waiter",
              [](const std::string& n) {
                return n.find("pthread_mutex_lock") != std::string::npos ||
                       n.find("__lll_lock_wait") != std::string::npos;
              },
              "fiberloop_report_locks_a_held_mutex");
}

BOOST_AUTO_TEST_CASE(a_task_in_a_raw_read_system_call_is_reported) {
  Death d = die_in_child([] {
    BlockingPipe pipe;
    std::thread writer = write_later(pipe);
    EventLoop loop;
    watched(loop, kThreshold);
    long r = loop.run_until_complete(loop.create_task(
        named("raw_reader"), [&] { return fiberloop_report_reads_by_raw_syscall(pipe.r); }));
    writer.join();
    if (r != 1) fail("syscall(SYS_read) returned " + std::to_string(r));
    if (fiberloop::hooks::stats().waits != 0) fail("a raw system call went through the hooks");
  });
  check_stall(d, "raw_reader", [](const std::string& n) { return n == "syscall"; },
              "fiberloop_report_reads_by_raw_syscall");
}

BOOST_AUTO_TEST_CASE(a_task_waiting_for_a_static_another_thread_initializes_is_reported) {
  Death d = die_in_child([] {
    std::thread first([] { fiberloop_report_uses_a_static(); });
    until(constructing);
    EventLoop loop;
    watched(loop, kThreshold);
    int r = loop.run_until_complete(
        loop.create_task(named("static_user"), [] { return fiberloop_report_uses_a_static(); }));
    first.join();
    if (r != 42) fail("the static is " + std::to_string(r));
  });
  check_stall(d, "static_user",
              [](const std::string& n) { return n.find("__cxa_guard_acquire") != std::string::npos; },
              "fiberloop_report_uses_a_static");
  // The loop thread's own backtrace: the initializer runs on the other one.
  BOOST_TEST(d.stderr_text.find("fiberloop_report_constructs_slowly") == std::string::npos,
             d.stderr_text);
}

// The control: the same wait for the same pipe made with read(), which the
// hooks turn into a wait on the loop: no report, and another task runs.
BOOST_AUTO_TEST_CASE(the_same_wait_with_a_hooked_read_is_no_stall) {
  Death d = die_in_child([] {
    BlockingPipe pipe;
    std::thread writer = write_later(pipe);
    EventLoop loop;
    watched(loop, kQuietThreshold);
    long ticks = 0;
    long r = loop.run_until_complete([&] {
      bool stop = false;
      auto ticker = fiberloop::spawn([&] {
        while (!stop) {
          ++ticks;
          fiberloop::sleep(0.01);
        }
      });
      auto reader = fiberloop::get_running_loop().create_task(
          named("hooked_reader"), [&] { return fiberloop_report_reads_by_read(pipe.r); });
      long got = fiberloop::await(reader);
      stop = true;
      fiberloop::await(ticker);
      return got;
    });
    writer.join();
    if (r != 1) fail("read returned " + std::to_string(r));
    // About 60 ticks in the hold; 10 is what a loaded machine still gives.
    if (ticks < 10) fail("the ticker ran " + std::to_string(ticks) + " times");
    if (fiberloop::hooks::stats().waits == 0) fail("read did not wait on the loop");
  });
  check_quiet(d);
}

BOOST_AUTO_TEST_SUITE_END()
#endif  // FIBERLOOP_REPORT_SHADOWED
