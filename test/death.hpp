// death.hpp: run a function in a forked child and see how it died.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <string>

// Death is how a child ended: the signal that killed it (0 if it exited),
// its exit status, and everything it wrote to stderr.
struct Death {
  int signal = 0;
  int exit_status = 0;
  std::string stderr_text;
};

// die_in_child(fn) runs fn in a forked child with stderr captured; an alarm
// bounds a child that would hang (it then dies of SIGALRM).
template <class Fn>
Death die_in_child(Fn fn, unsigned limit_seconds = 10) {
  int pipefd[2];
  BOOST_REQUIRE_EQUAL(::pipe(pipefd), 0);
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    // Boost.Test's handlers would catch the child's signals and carry on
    // with the suite inside the child: the child dies plainly instead.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGALRM, SIGFPE, SIGILL}) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(sig, &dfl, nullptr);
    }
    ::alarm(limit_seconds);
    ::dup2(pipefd[1], STDERR_FILENO);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    try {
      fn();
    } catch (...) {
      ::_exit(2);  // never back into Boost.Test in the child
    }
    ::_exit(0);
  }
  ::close(pipefd[1]);
  Death d;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n > 0) {
      d.stderr_text.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipefd[0]);
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  BOOST_REQUIRE_EQUAL(waited, pid);
  if (WIFSIGNALED(status)) d.signal = WTERMSIG(status);
  if (WIFEXITED(status)) d.exit_status = WEXITSTATUS(status);
  return d;
}
