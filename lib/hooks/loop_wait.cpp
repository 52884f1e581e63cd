// loop_wait.cpp: the hooks' waits on the running loop, and how each ends.
#include "loop_wait.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <string>
#include <system_error>

#include "fd_table.hpp"
#include "fiberloop/await.hpp"
#include "fiberloop/detail/fiber.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/timeout.hpp"
#include "libc_calls.hpp"

namespace fiberloop::hooks {
namespace {

constexpr short kReadEvents = POLLIN | POLLRDNORM | POLLRDHUP;
constexpr short kWriteEvents = POLLOUT | POLLWRNORM;

// Direct is a wait on the loop's own registration of fd; `busy` when the
// loop refuses it (another task waits on fd, or add_reader callbacks hold
// it): then a poll set of our own is used instead.
enum class Direct { done, busy };

Outcome failed(int error) noexcept {
  errno = error;
  return Outcome::failed;
}

// cancelled(e): how every wait here ends on a CancelledError.
Outcome cancelled(const CancelledError& e) noexcept {
  keep_cancellation(e.message().c_str());
  errno = ECANCELED;
  return Outcome::cancelled;
}

Direct wait_on_loop(int fd, bool readable, const Deadline& deadline, Outcome& outcome) noexcept {
  try {
    EventLoop& loop = get_running_loop();
    auto wait = [&] {
      if (readable) {
        loop.wait_readable(fd);
      } else {
        loop.wait_writable(fd);
      }
    };
    counters().waits.fetch_add(1, std::memory_order_relaxed);
    if (deadline.at) {
      with_timeout_at(deadline.at, wait);
    } else {
      wait();
    }
    outcome = Outcome::ready;
  } catch (const TimeoutError&) {
    errno = EAGAIN;
    outcome = Outcome::timed_out;
  } catch (const CancelledError& e) {
    outcome = cancelled(e);
  } catch (const RuntimeError&) {
    return Direct::busy;
  } catch (const std::system_error& e) {
    // EBADF: the fd was closed (forget_fd) while the task waited. Anything
    // else is epoll refusing the file (EPERM: a regular file, always ready).
    if (e.code().value() == EBADF) {
      outcome = failed(EBADF);
    } else {
      outcome = Outcome::ready;
    }
  } catch (const std::bad_alloc&) {
    outcome = failed(ENOMEM);
  } catch (const std::exception&) {
    outcome = failed(EIO);
  }
  return Direct::done;
}

std::uint32_t epoll_events(short events) noexcept {
  std::uint32_t ev = 0;
  if (events & (POLLIN | POLLRDNORM)) ev |= EPOLLIN;
  if (events & POLLPRI) ev |= EPOLLPRI;
  if (events & (POLLOUT | POLLWRNORM | POLLWRBAND)) ev |= EPOLLOUT;
  if (events & POLLRDHUP) ev |= EPOLLRDHUP;
  return ev;
}

}  // namespace

constinit Counters hook_counters;

bool in_task() noexcept {
  return detail::running_task() != nullptr && !detail::Fiber::current_chain_unwinding();
}

Deadline Deadline::after(std::optional<double> seconds) {
  if (!seconds) return {};
  return {get_running_loop().time() + *seconds};
}

std::optional<double> Deadline::remaining() const {
  if (!at) return std::nullopt;
  double left = *at - get_running_loop().time();
  return left > 0 ? left : 0.0;
}

void keep_cancellation(const char* message) noexcept {
  counters().cancelled.fetch_add(1, std::memory_order_relaxed);
  if (detail::TaskStateBase* task = detail::running_task()) {
    task->uncancel();
    try {
      task->cancel(message);
    } catch (...) {
      task->cancel(std::string());  // the message could not be copied
    }
  }
}

bool ready_now(int fd, short events) noexcept {
  pollfd p{fd, events, 0};
  return libc().poll(&p, 1, 0) != 0;  // ready, POLLNVAL or an error: the call will tell
}

Outcome wait_any(const pollfd* fds, nfds_t n, const Deadline& deadline) noexcept {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return failed(errno);
  for (nfds_t i = 0; i < n; ++i) {
    if (fds[i].fd < 0) continue;
    epoll_event ev{};
    ev.events = epoll_events(fds[i].events);
    ev.data.fd = fds[i].fd;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd, &ev) == 0 || errno != EEXIST) continue;
    // The same fd twice: watch the union of what its entries ask.
    for (nfds_t j = 0; j < i; ++j) {
      if (fds[j].fd == fds[i].fd) ev.events |= epoll_events(fds[j].events);
    }
    ::epoll_ctl(ep, EPOLL_CTL_MOD, fds[i].fd, &ev);
  }
  Outcome outcome = Outcome::ready;
  if (wait_on_loop(ep, true, deadline, outcome) == Direct::busy) outcome = failed(EBUSY);
  int saved = errno;
  try {
    get_running_loop().forget_fd(ep);
  } catch (...) {
  }
  libc().close(ep);
  errno = saved;
  return outcome;
}

Outcome wait_one(int fd, short events, const Deadline& deadline) noexcept {
  bool readable = (events & ~kReadEvents) == 0;
  bool writable = (events & ~kWriteEvents) == 0;
  if (readable != writable && static_cast<unsigned>(fd) < static_cast<unsigned>(FdTable::kMaxFd)) {
    // A read-modify-write only the first time: this runs on every wait.
    FdTable& table = FdTable::instance();
    if (!(table.get(fd) & kRegistered)) table.set(fd, kRegistered);
    Outcome outcome;
    if (wait_on_loop(fd, readable, deadline, outcome) == Direct::done) return outcome;
  }
  pollfd p{fd, events, 0};
  return wait_any(&p, 1, deadline);
}

Outcome sleep_for(double seconds) noexcept {
  try {
    counters().sleeps.fetch_add(1, std::memory_order_relaxed);
    fiberloop::sleep(seconds);
    return Outcome::ready;
  } catch (const CancelledError& e) {
    return cancelled(e);
  } catch (const std::bad_alloc&) {
    return failed(ENOMEM);
  } catch (const std::exception&) {
    return failed(EIO);
  }
}

void forget_registration(int fd) noexcept {
  FdTable& table = FdTable::instance();
  if (!(table.get(fd) & kRegistered)) return;
  table.clear(fd, kRegistered);
  try {
    get_running_loop().forget_fd(fd);
  } catch (...) {
    // No loop runs on this thread: the rule is to close on the loop's
    // thread (docs/hooks.md); nothing else can be done from here.
  }
}

void spend_budget() noexcept {
  try {
    detail::TaskStateBase::spend_budget();
  } catch (const CancelledError& e) {
    keep_cancellation(e.message().c_str());
  } catch (const std::exception&) {
  }
}

}  // namespace fiberloop::hooks
