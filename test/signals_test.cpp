// Signals as loop callbacks (signals.hpp): delivery, replacement, removal,
// what is restored, the refusals, and the other threads.
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <fiberloop/fiberloop.hpp>
#include <stdexcept>
#include <string>
#include <thread>

#include "death.hpp"
#include "loop_fixture.hpp"

using fiberloop::EventLoop;
using fiberloop::RuntimeError;

namespace {

bool blocked_here(int sig) {
  sigset_t set;
  ::pthread_sigmask(SIG_BLOCK, nullptr, &set);
  return sigismember(&set, sig) == 1;
}

using Handler = void (*)(int);
Handler disposition(int sig) {
  struct sigaction sa {};
  ::sigaction(sig, nullptr, &sa);
  return sa.sa_handler;
}

// until(cond) runs the loop an iteration at a time until cond holds, for at
// most `limit` seconds of loop time: a signal that never comes fails.
template <class Cond>
bool until(EventLoop& loop, Cond cond, double limit = 5.0) {
  double end = loop.time() + limit;
  while (!cond() && loop.time() < end) {
    auto wake = loop.call_later(0.01, [] {});  // a bounded poll, never a forever one
    loop.run_once();
    wake.cancel();
  }
  return cond();
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(signals, LoopFixture)

BOOST_AUTO_TEST_CASE(a_handler_runs_as_a_callback_on_the_loop_s_thread) {
  int calls = 0;
  bool in_loop = false;
  std::thread::id where;
  loop.add_signal_handler(SIGUSR1, [&] {
    ++calls;
    where = std::this_thread::get_id();
    in_loop = &fiberloop::get_running_loop() == &loop;  // signal context has no running loop
  });
  BOOST_TEST(blocked_here(SIGUSR1));
  ::kill(::getpid(), SIGUSR1);
  BOOST_TEST(calls == 0, "the handler ran inside kill(), in signal context");
  BOOST_REQUIRE(until(loop, [&] { return calls == 1; }));
  BOOST_TEST(in_loop);
  BOOST_TEST((where == std::this_thread::get_id()));
  BOOST_TEST(loop.remove_signal_handler(SIGUSR1));
}

BOOST_AUTO_TEST_CASE(a_handler_gets_its_arguments_and_runs_each_time) {
  int sum = 0;
  loop.add_signal_handler(SIGUSR2, [&](int step) { sum += step; }, 5);
  for (int i = 1; i <= 3; ++i) {
    ::kill(::getpid(), SIGUSR2);
    BOOST_REQUIRE(until(loop, [&] { return sum == 5 * i; }));
  }
}

BOOST_AUTO_TEST_CASE(a_burst_is_merged_but_never_lost_entirely) {
  int calls = 0;
  loop.add_signal_handler(SIGUSR1, [&] { ++calls; });
  for (int i = 0; i < 100; ++i) ::kill(::getpid(), SIGUSR1);
  BOOST_REQUIRE(until(loop, [&] { return calls >= 1; }));
  until(loop, [] { return false; }, 0.05);  // whatever else of the burst comes
  BOOST_TEST(calls >= 1);
  BOOST_TEST(calls <= 100);
  int before = calls;
  ::kill(::getpid(), SIGUSR1);  // the handler still works after the burst
  BOOST_TEST(until(loop, [&] { return calls == before + 1; }));
}

BOOST_AUTO_TEST_CASE(a_signal_sent_by_a_child_process_arrives) {
  bool got = false;
  loop.add_signal_handler(SIGUSR2, [&] { got = true; });
  pid_t parent = ::getpid();
  pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    ::kill(parent, SIGUSR2);
    ::_exit(0);
  }
  int status = 0;
  BOOST_REQUIRE_EQUAL(::waitpid(child, &status, 0), child);
  BOOST_TEST(until(loop, [&] { return got; }));
}

BOOST_AUTO_TEST_CASE(adding_again_replaces_the_handler) {
  int first = 0, second = 0;
  loop.add_signal_handler(SIGUSR1, [&] { ++first; });
  loop.add_signal_handler(SIGUSR1, [&] { ++second; });
  ::kill(::getpid(), SIGUSR1);
  BOOST_REQUIRE(until(loop, [&] { return second == 1; }));
  BOOST_TEST(first == 0);
  BOOST_TEST(loop.remove_signal_handler(SIGUSR1));
  BOOST_TEST(!loop.remove_signal_handler(SIGUSR1), "removed twice");
}

BOOST_AUTO_TEST_CASE(a_removed_or_replaced_handler_never_runs_again) {
  // The signal is read in one iteration and its handler called in the
  // next: removal or replacement in between must win, whatever the timing.
  for (int yields = 0; yields < 4; ++yields) {
    int old_calls = 0, new_calls = 0;
    run([&] {
      auto& l = fiberloop::get_running_loop();
      l.add_signal_handler(SIGUSR1, [&] { ++old_calls; });
      ::raise(SIGUSR1);
      for (int i = 0; i < yields; ++i) fiberloop::sleep(0);
      int before = old_calls;
      BOOST_TEST(l.remove_signal_handler(SIGUSR1));
      fiberloop::sleep(0.01);
      BOOST_TEST(old_calls == before, "yields " << yields << ": ran after its removal");
      l.add_signal_handler(SIGUSR1, [&] { ++old_calls; });
      ::raise(SIGUSR1);
      for (int i = 0; i < yields; ++i) fiberloop::sleep(0);
      before = old_calls;
      l.add_signal_handler(SIGUSR1, [&] { ++new_calls; });
      fiberloop::sleep(0.01);
      BOOST_TEST(old_calls == before, "yields " << yields << ": ran after its replacement");
      BOOST_TEST(new_calls <= 1);
      l.remove_signal_handler(SIGUSR1);
    });
  }
}

BOOST_AUTO_TEST_CASE(removal_restores_the_disposition_and_the_mask) {
  // SIGUSR2 ignored and unblocked before; SIGHUP default and already blocked.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction saved_usr2 {};
  ::sigaction(SIGUSR2, &ignore, &saved_usr2);
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &hup, nullptr);

  loop.add_signal_handler(SIGUSR2, [] {});
  loop.add_signal_handler(SIGHUP, [] {});
  BOOST_TEST(disposition(SIGUSR2) != SIG_IGN);
  BOOST_TEST(blocked_here(SIGUSR2));
  BOOST_TEST(loop.remove_signal_handler(SIGUSR2));
  BOOST_TEST(loop.remove_signal_handler(SIGHUP));
  BOOST_TEST(disposition(SIGUSR2) == SIG_IGN);
  BOOST_TEST(!blocked_here(SIGUSR2));
  BOOST_TEST(disposition(SIGHUP) == SIG_DFL);
  BOOST_TEST(blocked_here(SIGHUP), "a signal blocked before stays blocked");

  ::pthread_sigmask(SIG_UNBLOCK, &hup, nullptr);
  ::sigaction(SIGUSR2, &saved_usr2, nullptr);
}

BOOST_AUTO_TEST_CASE(closing_the_loop_restores_every_signal) {
  loop.add_signal_handler(SIGUSR1, [] {});
  loop.add_signal_handler(SIGTERM, [] {});
  loop.close();
  BOOST_TEST(!blocked_here(SIGUSR1));
  BOOST_TEST(!blocked_here(SIGTERM));
  BOOST_TEST(disposition(SIGUSR1) == SIG_DFL);
  BOOST_TEST(disposition(SIGTERM) == SIG_DFL);
  BOOST_CHECK_THROW(loop.add_signal_handler(SIGUSR1, [] {}), RuntimeError);
}

BOOST_AUTO_TEST_CASE(a_signal_not_yet_handled_at_removal_is_dropped) {
  // SIGUSR1's default action is to terminate: handed to it late, the signal
  // would kill the process.
  Death d = die_in_child([] {
    EventLoop own;
    own.add_signal_handler(SIGUSR1, [] { ::_exit(3); });
    ::kill(::getpid(), SIGUSR1);  // pending: the loop has not read it
    if (!own.remove_signal_handler(SIGUSR1)) ::_exit(4);
    own.run_until_complete(own.create_task([] { fiberloop::sleep(0.05); }));
  });
  BOOST_TEST(d.signal == 0, "died of signal " << d.signal);
  BOOST_TEST(d.exit_status == 0);
}

BOOST_AUTO_TEST_CASE(unusable_numbers_are_refused_with_the_reason) {
  auto refused = [&](int sig, const char* expected) {
    try {
      loop.add_signal_handler(sig, [] {});
    } catch (const std::invalid_argument& e) {
      BOOST_TEST(std::string(e.what()).find(expected) != std::string::npos,
                 "signal " << sig << ": " << e.what());
      return;
    }
    BOOST_ERROR("signal " << sig << " was accepted");
  };
  refused(0, "not a signal number");
  refused(-1, "not a signal number");
  refused(NSIG, "not a signal number");
  refused(1 << 20, "not a signal number");
  refused(SIGKILL, "SIGKILL cannot be caught");
  refused(SIGSTOP, "SIGSTOP cannot be caught");
  refused(SIGSEGV, "fault signal");
  refused(SIGBUS, "fault signal");
  refused(SIGFPE, "fault signal");
  refused(32, "reserved by the C library");
  BOOST_TEST(!loop.remove_signal_handler(SIGKILL));
  BOOST_CHECK_THROW(loop.remove_signal_handler(0), std::invalid_argument);
  BOOST_CHECK_THROW(loop.remove_signal_handler(NSIG), std::invalid_argument);
  BOOST_TEST(!blocked_here(SIGSEGV), "a refusal changed the mask");
  // Nothing was claimed: the loop goes on handling a good signal.
  bool got = false;
  loop.add_signal_handler(SIGRTMIN, [&] { got = true; });
  ::kill(::getpid(), SIGRTMIN);
  BOOST_TEST(until(loop, [&] { return got; }));
}

BOOST_AUTO_TEST_CASE(another_thread_is_refused) {
  std::string error;
  std::thread other([&] {
    try {
      loop.add_signal_handler(SIGUSR1, [] {});
    } catch (const RuntimeError& e) {
      error = e.what();
    }
    try {
      loop.remove_signal_handler(SIGUSR1);
      error += " | removed";
    } catch (const RuntimeError&) {
    }
  });
  other.join();
  BOOST_TEST(error.find("thread other than the loop's") != std::string::npos, error);
  BOOST_TEST(!blocked_here(SIGUSR1));
}

BOOST_AUTO_TEST_CASE(one_loop_at_a_time_owns_a_signal) {
  loop.add_signal_handler(SIGUSR1, [] {});
  {
    EventLoop second;
    try {
      second.add_signal_handler(SIGUSR1, [] {});
      BOOST_ERROR("two loops handle SIGUSR1");
    } catch (const RuntimeError& e) {
      BOOST_TEST(std::string(e.what()).find("another event loop") != std::string::npos);
    }
    BOOST_TEST(loop.remove_signal_handler(SIGUSR1));
    bool got = false;
    second.add_signal_handler(SIGUSR1, [&] { got = true; });  // free now
    ::kill(::getpid(), SIGUSR1);
    BOOST_TEST(until(second, [&] { return got; }));
  }
  BOOST_TEST(!blocked_here(SIGUSR1), "the second loop's close restored the mask");
}

BOOST_AUTO_TEST_CASE(a_throwing_handler_is_reported_and_the_loop_goes_on) {
  int calls = 0;
  loop.add_signal_handler(SIGUSR2, [&] {
    ++calls;
    throw std::runtime_error("handler failed");
  });
  ::kill(::getpid(), SIGUSR2);
  BOOST_REQUIRE(until(loop, [&] { return calls == 1; }));
  BOOST_REQUIRE_EQUAL(reports.size(), 1u);
  BOOST_TEST(reports[0].find("Exception in callback") != std::string::npos);
  expected_reports = 1;
  ::kill(::getpid(), SIGUSR2);
  BOOST_TEST(until(loop, [&] { return calls == 2; }));
  expected_reports = reports.size();
}

BOOST_AUTO_TEST_CASE(a_handler_added_after_a_worker_started_gets_the_signal) {
  run([] { fiberloop::to_thread([] {}); });
  bool got = false;
  loop.add_signal_handler(SIGTERM, [&] { got = true; });
  ::kill(::getpid(), SIGTERM);  // the worker blocks it; the loop thread's signalfd takes it
  BOOST_TEST(until(loop, [&] { return got; }));
}

BOOST_AUTO_TEST_CASE(a_signal_landing_on_an_application_thread_is_passed_on) {
  // A thread started before the handler does not block the signal: the
  // kernel may deliver a process signal there. pthread_kill forces it.
#if defined(__SANITIZE_THREAD__)
  // TSan takes every signal into its own handler and replays it later on
  // the thread's own terms; the forwarded tgkill does not survive that
  // (18 of 20 runs lost it). The normal and ASan builds check this path.
  BOOST_TEST_MESSAGE("skipped under TSan: its signal interception replaces the forwarding");
  return;
#endif
  std::atomic<bool> go{false}, done{false};
  std::thread app([&] {
    while (!go.load()) std::this_thread::yield();
    while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  bool got = false;
  loop.add_signal_handler(SIGUSR1, [&] { got = true; });
  go = true;
  ::pthread_kill(app.native_handle(), SIGUSR1);  // default action: terminate, if not passed on
  bool arrived = until(loop, [&] { return got; });
  done = true;
  app.join();
  BOOST_TEST(arrived);
}

BOOST_AUTO_TEST_CASE(a_handler_can_stop_the_loop_and_cancel_a_task) {
  auto sleeper = loop.create_task([] { fiberloop::sleep(60); });
  loop.add_signal_handler(SIGTERM, [&] { sleeper.cancel(); });
  loop.call_soon([] { ::kill(::getpid(), SIGTERM); });
  auto guard = loop.call_later(5, [&] { loop.stop(); });
  BOOST_CHECK_THROW(loop.run_until_complete(sleeper), fiberloop::CancelledError);
  guard.cancel();
  BOOST_TEST(sleeper.cancelled());
}

BOOST_AUTO_TEST_SUITE_END()
