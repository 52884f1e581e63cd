// The threads the library starts (the executor's workers) block the
// asynchronous signals, so a signal sent to the process reaches the loop
// thread — a signalfd there, a handler — and never a worker (issue 16).
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <string>

#include "death.hpp"
#include "loop_fixture.hpp"

namespace {

// worker_mask() is the signal mask of a default-executor worker, read on it.
sigset_t worker_mask() {
  return fiberloop::to_thread([] {
    sigset_t set;
    sigemptyset(&set);
    ::pthread_sigmask(SIG_BLOCK, nullptr, &set);
    return set;
  });
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(thread_signals, LoopFixture)

BOOST_AUTO_TEST_CASE(a_worker_blocks_the_asynchronous_signals) {
  sigset_t set = run([] { return worker_mask(); });
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, SIGPIPE, SIGALRM})
    BOOST_TEST(sigismember(&set, sig) == 1, "signal " << sig << " is not blocked on a worker");
  // The synchronous ones stay deliverable: a fault in a job still reports.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS})
    BOOST_TEST(sigismember(&set, sig) == 0, "signal " << sig << " is blocked on a worker");
}

BOOST_AUTO_TEST_CASE(the_creator_s_mask_is_restored_after_a_worker_starts) {
  sigset_t before, after;
  ::pthread_sigmask(SIG_BLOCK, nullptr, &before);
  run([] { fiberloop::to_thread([] {}); });
  ::pthread_sigmask(SIG_BLOCK, nullptr, &after);
  for (int sig = 1; sig < SIGRTMIN; ++sig)
    BOOST_TEST(sigismember(&before, sig) == sigismember(&after, sig), "signal " << sig);
}

BOOST_AUTO_TEST_CASE(sigint_reaches_a_signalfd_set_up_after_a_worker_started) {
  // The pattern of a Ctrl-C handler: block SIGINT on the loop thread, read it
  // from a signalfd. A worker that left SIGINT deliverable would take it
  // instead, and its default action would kill the process (exit 130).
  Death d = die_in_child([] {
    fiberloop::EventLoop own;
    own.run_until_complete(own.create_task([] { fiberloop::to_thread([] {}); }));
    BOOST_REQUIRE(fiberloop::default_executor(own).thread_count() >= 1u);
    sigset_t only_int;
    sigemptyset(&only_int);
    sigaddset(&only_int, SIGINT);
    if (::pthread_sigmask(SIG_BLOCK, &only_int, nullptr) != 0) ::_exit(3);
    int sfd = ::signalfd(-1, &only_int, SFD_CLOEXEC);
    if (sfd < 0) ::_exit(4);
    ::kill(::getpid(), SIGINT);
    pollfd p{sfd, POLLIN, 0};
    int ready;
    do {
      ready = ::poll(&p, 1, 3000);
    } while (ready < 0 && errno == EINTR);
    if (ready != 1) ::_exit(5);  // SIGINT went elsewhere (or nowhere)
    signalfd_siginfo info{};
    if (::read(sfd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) ::_exit(6);
    if (info.ssi_signo != static_cast<unsigned>(SIGINT)) ::_exit(7);
    ::close(sfd);
    own.close();  // joins the worker
  });
  BOOST_TEST(d.signal == 0,
             "the child died of signal " << d.signal << "; stderr: " << d.stderr_text);
  BOOST_TEST(d.exit_status == 0,
             "the child exited " << d.exit_status << "; stderr: " << d.stderr_text);
}

BOOST_AUTO_TEST_SUITE_END()
