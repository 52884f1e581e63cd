// The stall watchdog (EventLoop::set_stall_threshold): a run that holds the
// loop thread is reported while it lasts (stderr, with the loop thread's
// backtrace) and once when it ends (the exception handler). Each stalling
// case runs in a forked child whose stderr the parent reads.
#include <signal.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>

#include "death.hpp"
#include "stall_report.hpp"

// The functions the backtraces must name: external linkage, kept out of
// line, and linked with -rdynamic (test/meson.build) so that dladdr can.
int fiberloop_stall_test_sleeps_in_usleep(unsigned microseconds);
long fiberloop_stall_test_spins(double seconds);

// The watchdog's signal cuts a sleep short (EINTR, as any signal): sleep
// again until the deadline, as a program that sleeps must.
[[gnu::noinline]] int fiberloop_stall_test_sleeps_in_usleep(unsigned microseconds) {
  auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(microseconds);
  int sleeps = 0;
  for (auto now = std::chrono::steady_clock::now(); now < until;
       now = std::chrono::steady_clock::now()) {
    ::usleep(static_cast<unsigned>(
        std::chrono::duration_cast<std::chrono::microseconds>(until - now).count()));
    ++sleeps;
  }
  asm volatile("" ::: "memory");  // no tail call: this frame stays on the stack
  return sleeps;
}

[[gnu::noinline]] long fiberloop_stall_test_spins(double seconds) {
  volatile long spins = 0;
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) spins = spins + 1;
  return spins;
}

namespace {

using fiberloop::EventLoop;

// reported(loop) has every exception handler report written to stderr as
// END[message|task=name|on=thread]END, thread being the loop's or another.
void reported(EventLoop& loop) {
  loop.set_exception_handler([loop_thread = std::this_thread::get_id()](
                                 EventLoop&, const fiberloop::ExceptionContext& ctx) {
    bool on_loop = std::this_thread::get_id() == loop_thread;
    say(kEndOpen + ctx.message + "|task=" + ctx.task + "|on=" + (on_loop ? "loop" : "another") +
        "]END\n");
  });
}

// watched(loop, threshold) sets the watchdog up, reported.
void watched(EventLoop& loop, double threshold) {
  loop.set_stall_threshold(threshold);
  reported(loop);
}

// took(end_report) is the duration "took N seconds" states, or NaN.
double took(const std::string& end_report) {
  auto at = end_report.find(" took ");
  if (at == std::string::npos) return std::nan("");
  return std::strtod(end_report.c_str() + at + 6, nullptr);
}

// Stall is what a child's stderr says about one stalling run.
struct Stall {
  Death death;
  std::string detection;  // the stderr report, to the end report (or the end)
  std::string end;        // the exception handler's report
};

Stall read_stall(Death d) {
  Stall s{d, between(d.stderr_text, kDetected, kEndOpen), between(d.stderr_text, kEndOpen, "]END")};
  return s;
}

// check_one_stall(s, name, what, at_least, function) checks one report at
// detection and one at the end, both naming `name`, the end's total at
// least `at_least` seconds, and both backtraces showing `function`.
void check_one_stall(const Stall& s, const std::string& detected_as, const std::string& ended_as,
                     const std::string& task, double at_least, const std::string& function) {
  const std::string& all = s.death.stderr_text;
  BOOST_TEST(s.death.signal == 0, "died of signal " << s.death.signal << ": " << all);
  BOOST_TEST(s.death.exit_status == 0, all);
  BOOST_TEST(count(all, kDetected) == 1u, all);
  BOOST_TEST(count(all, kEndOpen) == 1u, all);
  BOOST_TEST(s.detection.find(detected_as + " has held the loop thread for ") == 0, all);
  BOOST_TEST(s.end.find(ended_as + " took ") == 0, all);
  BOOST_TEST(s.end.find("it stalled the loop") != std::string::npos, all);
  BOOST_TEST(s.end.find("|task=" + task + "|on=loop") != std::string::npos, all);
  BOOST_TEST(took(s.end) >= at_least, all);
  if (kBacktraceExpected) {
    BOOST_TEST(s.detection.find(function) != std::string::npos, all);
    BOOST_TEST(s.end.find(function) != std::string::npos, all);
  }
}

// quiet(d) checks a child that made no report at all.
void check_quiet(const Death& d) {
  BOOST_TEST(d.signal == 0, "died of signal " << d.signal << ": " << d.stderr_text);
  BOOST_TEST(d.exit_status == 0, d.stderr_text);
  BOOST_TEST(count(d.stderr_text, kDetected) == 0u, d.stderr_text);
  BOOST_TEST(count(d.stderr_text, kEndOpen) == 0u, d.stderr_text);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(stall_watchdog)

BOOST_AUTO_TEST_CASE(a_task_blocked_in_a_system_call_is_named_at_detection_and_at_the_end) {
  Stall s = read_stall(die_in_child([] {
    EventLoop loop;
    watched(loop, 0.05);
    loop.run_until_complete(loop.create_task(fiberloop::TaskOptions{"sleeper", 0}, [] {
      return fiberloop_stall_test_sleeps_in_usleep(300000);
    }));
  }));
  check_one_stall(s, "Task 'sleeper'", "Executing <Task 'sleeper' step>", "sleeper", 0.3,
                  "fiberloop_stall_test_sleeps_in_usleep");
}

BOOST_AUTO_TEST_CASE(a_task_that_spins_is_named_at_detection_and_at_the_end) {
  Stall s = read_stall(die_in_child([] {
    EventLoop loop;
    watched(loop, 0.05);
    loop.run_until_complete(loop.create_task(fiberloop::TaskOptions{"spinner", 0},
                                             [] { return fiberloop_stall_test_spins(0.2); }));
  }));
  check_one_stall(s, "Task 'spinner'", "Executing <Task 'spinner' step>", "spinner", 0.2,
                  "fiberloop_stall_test_spins");
}

BOOST_AUTO_TEST_CASE(a_callback_that_blocks_is_reported_as_a_callback) {
  Stall s = read_stall(die_in_child([] {
    EventLoop loop;
    watched(loop, 0.05);
    loop.call_soon([&] {
      fiberloop_stall_test_sleeps_in_usleep(200000);
      loop.stop();
    });
    loop.run_forever();
  }));
  check_one_stall(s, "a callback", "Executing <Handle>", "", 0.2,
                  "fiberloop_stall_test_sleeps_in_usleep");
}

BOOST_AUTO_TEST_CASE(the_loop_goes_on_after_a_stall_and_reports_each_stall_once) {
  Death d = die_in_child([] {
    EventLoop loop;
    watched(loop, 0.05);
    int done = loop.run_until_complete([] {
      fiberloop_stall_test_sleeps_in_usleep(150000);
      fiberloop::sleep(0.01);
      fiberloop_stall_test_sleeps_in_usleep(150000);
      return 2;
    });
    if (done != 2) ::_exit(3);
  });
  BOOST_TEST(d.exit_status == 0, d.stderr_text);
  BOOST_TEST(count(d.stderr_text, kDetected) == 2u, d.stderr_text);
  BOOST_TEST(count(d.stderr_text, kEndOpen) == 2u, d.stderr_text);
}

// The negative cases use a threshold well above a scheduling hiccup of the
// shared test machine, over a run several times as long.
BOOST_AUTO_TEST_CASE(a_loop_idle_in_its_poll_is_no_stall) {
  check_quiet(die_in_child([] {
    EventLoop loop;
    watched(loop, 0.3);
    loop.run_until_complete([] { fiberloop::sleep(0.8); });
    loop.call_later(0.6, [&] { loop.stop(); });  // and without any task
    loop.run_forever();
  }));
}

BOOST_AUTO_TEST_CASE(many_short_steps_are_no_stall) {
  check_quiet(die_in_child([] {
    EventLoop loop;
    watched(loop, 0.3);
    double until = loop.time() + 0.8;
    long steps = 0;
    for (int i = 0; i < 50; ++i) {
      loop.create_task([&] {
        while (fiberloop::get_running_loop().time() < until) {
          ++steps;
          fiberloop::sleep(0);
        }
      });
    }
    loop.run_until_complete([&] { fiberloop::sleep(0.9); });
    if (steps < 1000) ::_exit(3);  // the runs were many, and short
  }));
}

BOOST_AUTO_TEST_CASE(threshold_zero_turns_the_watchdog_off) {
  Death d = die_in_child([] {
    EventLoop loop;
    watched(loop, 0.05);
    loop.set_stall_threshold(0);
    if (loop.stall_threshold() != 0) ::_exit(3);
    loop.run_until_complete([] { fiberloop_stall_test_sleeps_in_usleep(200000); });
  });
  check_quiet(d);
}

BOOST_AUTO_TEST_CASE(debug_mode_turns_it_on_at_a_tenth_of_a_second_unless_set) {
  EventLoop loop;
  BOOST_TEST(loop.stall_threshold() == 0.0);
  loop.set_debug(true);
  BOOST_TEST(loop.stall_threshold() == EventLoop::kDebugStallThreshold);
  BOOST_TEST(EventLoop::kDebugStallThreshold == 0.1);
  loop.set_debug(false);
  BOOST_TEST(loop.stall_threshold() == 0.0);
  loop.set_stall_threshold(0.3);
  loop.set_debug(true);
  BOOST_TEST(loop.stall_threshold() == 0.3);  // an explicit threshold stays
  loop.set_stall_threshold(0);
  BOOST_TEST(loop.stall_threshold() == 0.0);  // even 0, in debug mode
  loop.close();
}

// One end report: it replaces debug mode's slow-callback report for the run.
BOOST_AUTO_TEST_CASE(set_debug_alone_starts_the_watchdog_and_reports_a_stall_once) {
  Stall s = read_stall(die_in_child([] {
    EventLoop loop;
    reported(loop);
    loop.set_debug(true);
    loop.run_until_complete(loop.create_task(fiberloop::TaskOptions{"debugged", 0}, [] {
      return fiberloop_stall_test_sleeps_in_usleep(300000);
    }));
  }));
  check_one_stall(s, "Task 'debugged'", "Executing <Task 'debugged' step>", "debugged", 0.3,
                  "fiberloop_stall_test_sleeps_in_usleep");
}

BOOST_AUTO_TEST_CASE(close_joins_the_monitor_at_once) {
  EventLoop loop;
  loop.set_stall_threshold(20.0);  // the monitor's tick: 5 s
  loop.run_until_complete([] { fiberloop::sleep(0.01); });
  auto t0 = std::chrono::steady_clock::now();
  loop.close();
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(took < 0.5);
  BOOST_CHECK_THROW(loop.set_stall_threshold(0.1), fiberloop::RuntimeError);
  loop.set_stall_threshold(0);  // off is fine on a closed loop
}

// blocked_on(comm) is the signal mask (/proc's SigBlk) of this process's
// thread named comm, and whether there is one.
std::pair<bool, unsigned long long> blocked_on(const std::string& comm) {
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream name(task.path() / "comm");
    std::string got;
    std::getline(name, got);
    if (got != comm) continue;
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("SigBlk:", 0) == 0) return {true, std::stoull(line.substr(7), nullptr, 16)};
    }
  }
  return {false, 0};
}

BOOST_AUTO_TEST_CASE(the_monitor_blocks_the_asynchronous_signals_and_its_creator_s_mask_stays) {
  sigset_t before, after;
  ::pthread_sigmask(SIG_BLOCK, nullptr, &before);
  EventLoop loop;
  loop.set_stall_threshold(1.0);
  ::pthread_sigmask(SIG_BLOCK, nullptr, &after);
  // A thread starts with every signal blocked until glibc gives it its
  // creator's mask: wait (bounded) for that, seen as SIGSEGV unblocked.
  auto [found, mask] = blocked_on("fiberloop-stall");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (found && ((mask >> (SIGSEGV - 1)) & 1) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
    std::tie(found, mask) = blocked_on("fiberloop-stall");
  }
  BOOST_REQUIRE(found);
  auto blocked = [m = mask](int sig) { return (m >> (sig - 1)) & 1; };
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGCHLD, SIGPIPE, SIGALRM})
    BOOST_TEST(blocked(sig) == 1u, "signal " << sig << " is not blocked on the monitor");
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL})
    BOOST_TEST(blocked(sig) == 0u, "signal " << sig << " is blocked on the monitor");
  for (int sig = 1; sig < SIGRTMIN; ++sig)
    BOOST_TEST(sigismember(&before, sig) == sigismember(&after, sig), "signal " << sig);
  loop.close();
  BOOST_TEST(!blocked_on("fiberloop-stall").first);  // joined
}

BOOST_AUTO_TEST_CASE(a_threshold_must_be_finite_and_not_negative) {
  EventLoop loop;
  BOOST_CHECK_THROW(loop.set_stall_threshold(-1), std::invalid_argument);
  BOOST_CHECK_THROW(loop.set_stall_threshold(std::nan("")), std::invalid_argument);
  BOOST_CHECK_THROW(loop.set_stall_threshold(std::numeric_limits<double>::infinity()),
                    std::invalid_argument);
  BOOST_TEST(loop.stall_threshold() == 0.0);
}

BOOST_AUTO_TEST_SUITE_END()
