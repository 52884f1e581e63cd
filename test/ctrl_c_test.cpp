// fiberloop::run() and Ctrl-C, as asyncio.run (3.11+): each case runs in a
// forked child, which the parent (or the child itself) sends SIGINT; the
// parent checks what unwound and how the child ended.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <cstdio>
#include <fiberloop/fiberloop.hpp>
#include <string>

#include "death.hpp"

namespace {

// say(text) writes to stderr at once, unbuffered: what the parent reads.
void say(const char* text) { (void)!::write(STDERR_FILENO, text, std::char_traits<char>::length(text)); }

struct Says {
  const char* text;
  ~Says() { say(text); }
};

// interrupted_run(body) is a child's main(): run(body), and the conventional
// exit status 130 for a KeyboardInterrupt.
template <class Body>
void interrupted_run(Body body) {
  try {
    fiberloop::run(body);
    say("run returned;");
  } catch (const fiberloop::KeyboardInterrupt&) {
    say("KeyboardInterrupt;");
    ::_exit(fiberloop::KeyboardInterrupt::kExitStatus);
  } catch (const fiberloop::CancelledError&) {
    say("CancelledError;");
    ::_exit(5);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ctrl_c)

BOOST_AUTO_TEST_CASE(the_first_sigint_unwinds_every_task_and_run_throws) {
  Death d = die_in_child([] {
    interrupted_run([] {
      Says main_frame{"main unwound;"};
      auto worker = fiberloop::spawn([] {
        Says worker_frame{"worker unwound;"};
        fiberloop::sleep(60);
      });
      fiberloop::sleep(0);  // the worker is waiting now
      ::kill(::getpid(), SIGINT);
      fiberloop::sleep(60);
    });
  });
  BOOST_TEST(d.signal == 0, "died of signal " << d.signal << ": " << d.stderr_text);
  BOOST_TEST(d.exit_status == 130);
  BOOST_TEST(d.stderr_text.find("main unwound;") != std::string::npos, d.stderr_text);
  BOOST_TEST(d.stderr_text.find("worker unwound;") != std::string::npos, d.stderr_text);
  BOOST_TEST(d.stderr_text.find("KeyboardInterrupt;") != std::string::npos, d.stderr_text);
}

BOOST_AUTO_TEST_CASE(sigint_from_another_process_reaches_a_waiting_task) {
  int ready[2];
  BOOST_REQUIRE_EQUAL(::pipe(ready), 0);
  pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    ::alarm(10);
    try {
      fiberloop::run([&] {
        (void)!::write(ready[1], "r", 1);  // the handler is in place: run() set it first
        fiberloop::sleep(60);
      });
    } catch (const fiberloop::KeyboardInterrupt&) {
      ::_exit(130);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  BOOST_REQUIRE_EQUAL(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::kill(child, SIGINT);
  int status = 0;
  pid_t got;
  while ((got = ::waitpid(child, &status, 0)) < 0 && errno == EINTR) {
  }
  BOOST_REQUIRE_EQUAL(got, child);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 130);
}

BOOST_AUTO_TEST_CASE(a_second_sigint_during_the_shutdown_ends_the_process_at_once) {
  Death d = die_in_child([] {
    interrupted_run([] {
      try {
        ::kill(::getpid(), SIGINT);
        fiberloop::sleep(60);
      } catch (const fiberloop::CancelledError&) {
        say("cancelled;");
        ::kill(::getpid(), SIGINT);  // Ctrl-C again while the task still cleans up
        ::usleep(2'000'000);         // even stuck, off the loop, the process ends
        say("survived;");
        throw;
      }
    });
  });
  BOOST_TEST(d.signal == SIGINT, "the child ended with signal " << d.signal << ", status "
                                                                << d.exit_status << ": "
                                                                << d.stderr_text);
  BOOST_TEST(d.stderr_text.find("cancelled;") != std::string::npos);
  BOOST_TEST(d.stderr_text.find("survived;") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_main_task_that_swallows_the_cancellation_returns_normally) {
  Death d = die_in_child([] {
    int result = 0;
    fiberloop::run([&] {
      try {
        ::kill(::getpid(), SIGINT);
        fiberloop::sleep(60);
      } catch (const fiberloop::CancelledError&) {
        fiberloop::current_task()->uncancel();
        result = 7;
      }
    });
    ::_exit(result);
  });
  BOOST_TEST(d.signal == 0, d.stderr_text);
  BOOST_TEST(d.exit_status == 7);
}

BOOST_AUTO_TEST_CASE(a_program_s_own_sigint_handler_replaces_the_default) {
  Death d = die_in_child([] {
    int value = fiberloop::run([] {
      fiberloop::Event interrupted;
      fiberloop::get_running_loop().add_signal_handler(SIGINT, [&] { interrupted.set(); });
      ::kill(::getpid(), SIGINT);
      interrupted.wait();
      return 9;
    });
    ::_exit(value);
  });
  BOOST_TEST(d.signal == 0, d.stderr_text);
  BOOST_TEST(d.exit_status == 9);
}

BOOST_AUTO_TEST_CASE(an_ignored_sigint_stays_ignored) {
  Death d = die_in_child([] {
    ::signal(SIGINT, SIG_IGN);  // as a shell leaves it for a background job
    int value = fiberloop::run([] {
      ::kill(::getpid(), SIGINT);
      fiberloop::sleep(0.05);
      return 4;
    });
    ::_exit(::signal(SIGINT, SIG_IGN) == SIG_IGN ? value : 6);
  });
  BOOST_TEST(d.signal == 0, d.stderr_text);
  BOOST_TEST(d.exit_status == 4);
}

BOOST_AUTO_TEST_CASE(run_gives_sigint_back_as_it_found_it) {
  Death d = die_in_child([] {
    fiberloop::run([] {});
    struct sigaction sa {};
    ::sigaction(SIGINT, nullptr, &sa);
    sigset_t mask;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    if (sa.sa_handler != SIG_DFL) ::_exit(3);
    if (sigismember(&mask, SIGINT)) ::_exit(4);
    ::kill(::getpid(), SIGINT);  // the default action again: the child dies of it
    ::_exit(5);
  });
  BOOST_TEST(d.signal == SIGINT, "status " << d.exit_status);
}

BOOST_AUTO_TEST_SUITE_END()
