// poll_hooks.cpp: poll, ppoll, select and pselect. Inside a task, with a
// timeout that is not zero, they wait on the loop for any of the fds.
#include <poll.h>
#include <sys/resource.h>
#include <sys/select.h>

#include <cerrno>
#include <optional>
#include <vector>

#include "libc_calls.hpp"
#include "loop_wait.hpp"

#define HOOK extern "C" __attribute__((visibility("default")))

namespace fiberloop::hooks {
namespace {

std::optional<double> seconds_of(const timespec* t) {
  if (!t) return std::nullopt;
  return static_cast<double>(t->tv_sec) + static_cast<double>(t->tv_nsec) / 1e9;
}

bool valid(const timespec* t) {
  return !t || (t->tv_sec >= 0 && t->tv_nsec >= 0 && t->tv_nsec < 1'000'000'000);
}

// poll_on_loop(fds, n, timeout, mask): poll(2)'s answer, with the task
// waiting on the loop while no fd is ready. The signal mask applies to the
// polls of timeout zero this makes (a signal it unblocks that is pending
// then is delivered and gives EINTR), not to the wait on the loop.
int poll_on_loop(pollfd* fds, nfds_t n, std::optional<double> timeout, const sigset_t* mask) {
  const timespec zero{0, 0};
  Deadline deadline = Deadline::after(timeout);
  const pollfd* only = nullptr;  // the one fd poll watches, when there is one
  nfds_t watched = 0;
  for (bool first = true;; first = false) {
    int r = libc().ppoll(fds, n, &zero, mask);  // also libc's checks of fds and n
    if (r != 0 || deadline.passed()) return r;
    if (first) {
      for (nfds_t i = 0; i < n; ++i) {
        if (fds[i].fd >= 0 && watched++ == 0) only = &fds[i];
      }
    }
    Outcome outcome;
    if (watched == 0) {  // poll(2) as a sleep: negative fds are ignored
      outcome = deadline.at ? sleep_for(*deadline.remaining()) : sleep_for(1e9);
    } else if (watched == 1) {
      outcome = wait_one(only->fd, only->events, deadline);
    } else {
      outcome = wait_any(fds, n, deadline);
    }
    if (outcome == Outcome::timed_out) return libc().ppoll(fds, n, &zero, mask);
    if (outcome != Outcome::ready) return -1;
  }
}

// select() over poll: the sets become pollfds and back.
int select_on_loop(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, std::optional<double> timeout,
                   const sigset_t* mask) {
  std::vector<pollfd> fds;
  for (int fd = 0; fd < nfds; ++fd) {
    short events = 0;
    if (rd && FD_ISSET(fd, rd)) events |= POLLIN;
    if (wr && FD_ISSET(fd, wr)) events |= POLLOUT;
    if (ex && FD_ISSET(fd, ex)) events |= POLLPRI;
    if (events) fds.push_back({fd, events, 0});
  }
  int r = poll_on_loop(fds.data(), fds.size(), timeout, mask);
  if (r < 0) return r;
  for (const pollfd& p : fds) {
    if (p.revents & POLLNVAL) {
      errno = EBADF;  // select's answer for a closed fd in a set
      return -1;
    }
  }
  if (rd) FD_ZERO(rd);
  if (wr) FD_ZERO(wr);
  if (ex) FD_ZERO(ex);
  int ready = 0;
  for (const pollfd& p : fds) {
    if (rd && (p.events & POLLIN) && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
      FD_SET(p.fd, rd);
      ++ready;
    }
    if (wr && (p.events & POLLOUT) && (p.revents & (POLLOUT | POLLERR))) {
      FD_SET(p.fd, wr);
      ++ready;
    }
    if (ex && (p.events & POLLPRI) && (p.revents & POLLPRI)) {
      FD_SET(p.fd, ex);
      ++ready;
    }
  }
  return ready;
}

bool waits(std::optional<double> timeout) { return !timeout || *timeout > 0; }

// too_many(n): poll(2)'s own bound, RLIMIT_NOFILE, checked here because the
// system call takes the count as 32 bits: 2^40 fds would be polled as none.
bool too_many(nfds_t n) {
  if (n <= 1024) return false;  // never above the smallest soft limit
  rlimit limit{};
  return ::getrlimit(RLIMIT_NOFILE, &limit) != 0 || n > limit.rlim_cur;
}

int invalid() {
  errno = EINVAL;
  return -1;
}

}  // namespace
}  // namespace fiberloop::hooks

using namespace fiberloop::hooks;

HOOK int poll(pollfd* fds, nfds_t n, int timeout_ms) {
  if (timeout_ms == 0 || !in_task()) return libc().poll(fds, n, timeout_ms);
  if (too_many(n)) return invalid();
  std::optional<double> timeout;
  if (timeout_ms > 0) timeout = timeout_ms / 1000.0;
  return poll_on_loop(fds, n, timeout, nullptr);
}

HOOK int ppoll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) {
  if (!valid(timeout) || !waits(seconds_of(timeout)) || !in_task())
    return libc().ppoll(fds, n, timeout, mask);
  if (too_many(n)) return invalid();
  return poll_on_loop(fds, n, seconds_of(timeout), mask);
}

HOOK int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* timeout) {
  if (nfds < 0 || nfds > FD_SETSIZE || !in_task() ||
      (timeout && (timeout->tv_sec < 0 || timeout->tv_usec < 0 || timeout->tv_usec >= 1'000'000)))
    return libc().select(nfds, rd, wr, ex, timeout);
  std::optional<double> seconds;
  if (timeout) seconds = static_cast<double>(timeout->tv_sec) + static_cast<double>(timeout->tv_usec) / 1e6;
  if (!waits(seconds)) return libc().select(nfds, rd, wr, ex, timeout);
  Deadline deadline = Deadline::after(seconds);
  int r = select_on_loop(nfds, rd, wr, ex, seconds, nullptr);
  if (timeout) {  // Linux's select() leaves the time not slept
    double left = *deadline.remaining();
    timeout->tv_sec = static_cast<time_t>(left);
    timeout->tv_usec = static_cast<suseconds_t>((left - static_cast<double>(timeout->tv_sec)) * 1e6);
  }
  return r;
}

HOOK int pselect(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* timeout,
                 const sigset_t* mask) {
  if (nfds < 0 || nfds > FD_SETSIZE || !valid(timeout) || !waits(seconds_of(timeout)) || !in_task())
    return libc().pselect(nfds, rd, wr, ex, timeout, mask);
  return select_on_loop(nfds, rd, wr, ex, seconds_of(timeout), mask);
}
