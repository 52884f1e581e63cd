#include "fiberloop/detail/child_watcher.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

#include "fiberloop/detail/signal_handlers.hpp"

namespace fiberloop::detail {
namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

bool detect_pidfd() {
  if (const char* forced = std::getenv("FIBERLOOP_CHILD_WATCHER")) {
    if (std::strcmp(forced, "pidfd") == 0) return true;
    if (std::strcmp(forced, "sigchld") == 0) return false;
    throw std::invalid_argument(std::string("FIBERLOOP_CHILD_WATCHER=") + forced +
                                ": the choices are pidfd and sigchld");
  }
  int fd = pidfd_open(::getpid());
  if (fd < 0) return false;  // ENOSYS: a kernel before 5.3
  ::close(fd);
  return true;
}

// decode(status) is asyncio's returncode: the exit status, or the signal
// that ended the child, negated.
int decode(int status) {
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

}  // namespace

bool ChildWatcher::uses_pidfd() {
  static const bool pidfd = detect_pidfd();
  return pidfd;
}

ChildWatcher& ChildWatcher::of(EventLoop& loop) {
  auto& slot = loop.extension(ExtensionSlot::children);
  if (!slot) slot = std::make_shared<ChildWatcher>(loop);
  return static_cast<ChildWatcher&>(*slot);
}

ChildWatcher::~ChildWatcher() { close(); }

void ChildWatcher::before_spawn() {
  if (uses_pidfd() || hooked_) return;
  // The signal is blocked from here on: an exit during the spawn stays
  // pending for the signalfd.
  SignalHandlers::of(loop_).set_hook(SIGCHLD, [this] { on_sigchld(); });
  hooked_ = true;
}

void ChildWatcher::watch(const std::shared_ptr<ChildState>& child) {
  children_.emplace(child->pid, child);
  if (!uses_pidfd()) {
    try_reap(*child);  // it may have exited already, its SIGCHLD merged with another's
    return;
  }
  // Not watched, a child would never be reaped: on any failure, end it now.
  auto end_unwatched = [&] {
    if (child->pidfd >= 0) ::close(child->pidfd);
    child->pidfd = -1;
    ::kill(child->pid, SIGKILL);
    int status;
    while (::waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {
    }
    children_.erase(child->pid);
  };
  child->pidfd = pidfd_open(child->pid);
  if (child->pidfd < 0) {
    int err = errno;
    end_unwatched();
    throw std::system_error(err, std::generic_category(), "pidfd_open");
  }
  ChildState* watched = child.get();
  try {
    loop_.add_reader(child->pidfd, [this, watched] { try_reap(*watched); });
  } catch (...) {
    end_unwatched();
    throw;
  }
}

bool ChildWatcher::try_reap(ChildState& child) noexcept {
  int status = 0;
  pid_t got = ::waitpid(child.pid, &status, WNOHANG);
  if (got == 0 || (got < 0 && errno == EINTR)) return false;
  // ECHILD: someone reaped it (SIGCHLD set to SIG_IGN reaps automatically);
  // its status is lost, so asyncio's 255.
  finish(child, got == child.pid ? decode(status) : 255);
  return true;
}

void ChildWatcher::finish(ChildState& child, int returncode) noexcept {
  if (child.pidfd >= 0) {
    loop_.remove_reader(child.pidfd);
    ::close(child.pidfd);
    child.pidfd = -1;
  }
  child.returncode = returncode;
  auto node = children_.extract(child.pid);  // holds the child through set()
  try {
    child.exited.set();
  } catch (...) {  // a closed loop: nobody is left waiting
  }
}

void ChildWatcher::on_sigchld() noexcept {
  // One SIGCHLD can stand for many exits: ask each child, never waitpid(-1),
  // which would reap children that are not the loop's.
  for (auto it = children_.begin(); it != children_.end();) {
    ChildState& child = *(it++)->second;  // finish() erases the entry
    try_reap(child);
  }
}

void ChildWatcher::close() noexcept {
  while (!children_.empty()) {
    ChildState& child = *children_.begin()->second;
    ::kill(child.pid, SIGKILL);
    int status = 0;
    pid_t got;
    while ((got = ::waitpid(child.pid, &status, 0)) < 0 && errno == EINTR) {
    }
    finish(child, got == child.pid ? decode(status) : 255);
  }
  if (hooked_) {
    if (SignalHandlers* handlers = SignalHandlers::find(loop_)) handlers->remove_hook(SIGCHLD);
    hooked_ = false;
  }
}

}  // namespace fiberloop::detail
