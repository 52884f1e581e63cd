#include "fiberloop/detail/signal_handlers.hpp"

#include <pthread.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "fiberloop/errors.hpp"
#include "fiberloop/signals.hpp"

namespace fiberloop {
namespace detail {
namespace {

// Which loop handles each signal, process-wide: a disposition is the
// process's, so two loops cannot both own one. owner_tid is what the
// forwarding handler reads, in signal context: a lock-free atomic.
std::mutex owners_mutex;
SignalHandlers* owners[NSIG];
std::atomic<pid_t> owner_tid[NSIG];
static_assert(std::atomic<pid_t>::is_always_lock_free);

// forward_to_owner is the disposition while a loop handles the signal. The
// loop's thread blocks it, so this runs only on a thread that does not (one
// the application started before the handler was set): it passes the signal
// on to the loop's thread, where the signalfd takes it. Without it, such a
// thread would take the signal's default action (Ctrl-C would kill).
extern "C" void forward_to_owner(int sig) {
  int saved = errno;
  pid_t tid = owner_tid[sig].load(std::memory_order_relaxed);
  if (tid > 0) ::syscall(SYS_tgkill, ::getpid(), tid, sig);
  errno = saved;
}

std::string name_of(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

void check_catchable(int sig, const char* who) {
  auto refuse = [&](const std::string& why) {
    throw std::invalid_argument(std::string(who) + ": " + why);
  };
  if (sig < 1 || sig >= NSIG) refuse(std::to_string(sig) + " is not a signal number");
  if (sig == SIGKILL || sig == SIGSTOP) refuse(name_of(sig) + " cannot be caught");
  for (int fault : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) {
    if (sig == fault) {
      refuse(name_of(sig) +
             " is a fault signal: it goes to the faulting thread at once, a signalfd "
             "cannot take it");
    }
  }
  if (sig > SIGSYS && sig < SIGRTMIN) {
    refuse("signal " + std::to_string(sig) + " is reserved by the C library");
  }
}

void check_thread(EventLoop& loop, const char* who) {
  if (std::this_thread::get_id() != loop.core().thread_id()) {
    throw RuntimeError(std::string(who) + ": called from a thread other than the loop's");
  }
}

sigset_t only(int sig) {
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, sig);
  return set;
}

}  // namespace

SignalHandlers& SignalHandlers::of(EventLoop& loop) {
  auto& slot = loop.extension(ExtensionSlot::signals);
  if (!slot) slot = std::make_shared<SignalHandlers>(loop);
  return static_cast<SignalHandlers&>(*slot);
}

SignalHandlers* SignalHandlers::find(EventLoop& loop) noexcept {
  return static_cast<SignalHandlers*>(loop.extension(ExtensionSlot::signals).get());
}

SignalHandlers::~SignalHandlers() { close(); }

void SignalHandlers::set_user(int sig, HandleState::Callback handler, bool wakes) {
  const char* who = "add_signal_handler()";
  check_catchable(sig, who);
  check_thread(loop_, who);
  loop_.core().check_closed();
  Slot& slot = claim(sig, who);
  slot.user = std::make_shared<HandleState::Callback>(std::move(handler));
  slot.user_wakes = wakes;
}

std::size_t SignalHandlers::quiet_fds() const noexcept {
  if (fd_ < 0) return 0;
  for (const auto& [sig, slot] : slots_) {
    if (slot.user && slot.user_wakes) return 0;
  }
  return 1;
}

bool SignalHandlers::remove_user(int sig) {
  auto it = slots_.find(sig);
  if (it == slots_.end() || !it->second.user) return false;
  it->second.user.reset();
  release_if_unused(sig);
  return true;
}

void SignalHandlers::set_hook(int sig, std::function<void()> hook) {
  check_thread(loop_, "the child watcher");
  claim(sig, "the child watcher").hook = std::move(hook);
}

void SignalHandlers::remove_hook(int sig) noexcept {
  auto it = slots_.find(sig);
  if (it == slots_.end()) return;
  it->second.hook = nullptr;
  release_if_unused(sig);
}

SignalHandlers::Slot& SignalHandlers::claim(int sig, const char* who) {
  if (auto it = slots_.find(sig); it != slots_.end()) return it->second;
  std::lock_guard lock(owners_mutex);
  if (owners[sig] && owners[sig] != this) {
    throw RuntimeError(std::string(who) + ": " + name_of(sig) +
                       " is already handled by another event loop");
  }
  // Block first, then take the disposition: no instant when the signal
  // could reach this thread's old disposition, or none at all.
  Slot slot;
  sigset_t one = only(sig), before;
  ::pthread_sigmask(SIG_BLOCK, &one, &before);
  slot.was_blocked = ::sigismember(&before, sig) == 1;
  auto unblock = [&] {
    if (!slot.was_blocked) ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  };
  ::sigaddset(&mask_, sig);
  try {
    set_fd_mask();
  } catch (...) {
    ::sigdelset(&mask_, sig);
    unblock();
    throw;
  }
  struct sigaction forward {};
  forward.sa_handler = forward_to_owner;
  forward.sa_flags = SA_RESTART;
  ::sigfillset(&forward.sa_mask);
  owner_tid[sig].store(static_cast<pid_t>(::gettid()), std::memory_order_relaxed);
  if (::sigaction(sig, &forward, &slot.previous) != 0) {
    int err = errno;
    owner_tid[sig].store(0, std::memory_order_relaxed);
    ::sigdelset(&mask_, sig);
    set_fd_mask();
    unblock();
    throw std::system_error(err, std::generic_category(), std::string(who) + ": sigaction");
  }
  owners[sig] = this;
  return slots_.emplace(sig, std::move(slot)).first->second;
}

void SignalHandlers::release_if_unused(int sig) noexcept {
  auto it = slots_.find(sig);
  if (it == slots_.end() || it->second.user || it->second.hook) return;
  release(sig, it->second);
  slots_.erase(it);
}

void SignalHandlers::release(int sig, Slot& slot) noexcept {
  ::sigdelset(&mask_, sig);
  try {
    set_fd_mask();
  } catch (...) {  // the fd keeps a bit it will never be read for: harmless
  }
  // A signal that arrived and was not handled is dropped, not left pending
  // for the old disposition (SIGINT's default would kill us on unblocking).
  sigset_t one = only(sig);
  timespec now{0, 0};
  while (::sigtimedwait(&one, nullptr, &now) == sig) {
  }
  {
    std::lock_guard lock(owners_mutex);
    ::sigaction(sig, &slot.previous, nullptr);
    owner_tid[sig].store(0, std::memory_order_relaxed);
    owners[sig] = nullptr;
  }
  if (!slot.was_blocked) ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
}

void SignalHandlers::set_fd_mask() {
  bool first = fd_ < 0;
  int fd = ::signalfd(fd_, &mask_, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
  fd_ = fd;
  if (first) loop_.add_reader(fd_, [this] { on_readable(); });
}

void SignalHandlers::on_readable() noexcept {
  signalfd_siginfo infos[16];
  for (;;) {
    ssize_t n = ::read(fd_, infos, sizeof infos);
    if (n <= 0) return;  // EAGAIN: all taken
    for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof infos[0]); ++i) {
      auto it = slots_.find(static_cast<int>(infos[i].ssi_signo));
      if (it == slots_.end()) continue;
      if (it->second.hook) it->second.hook();
      if (std::shared_ptr<HandleState::Callback> user = it->second.user) {
        try {
          // The call comes an iteration later: by then the handler may be
          // removed or replaced, and a removed one must never run (it may
          // refer to what its remover destroyed next).
          loop_.call_soon([this, sig = it->first, user = std::move(user)] {
            auto now = slots_.find(sig);
            if (now != slots_.end() && now->second.user == user) (*user)();
          });
        } catch (...) {  // a closing loop: the signal has no one left to go to
        }
      }
    }
  }
}

void SignalHandlers::close() noexcept {
  for (auto& [sig, slot] : slots_) release(sig, slot);
  slots_.clear();
  if (fd_ >= 0) {
    loop_.remove_reader(fd_);
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace detail

void EventLoop::set_signal_handler(int sig, Callback handler) {
  detail::SignalHandlers::of(*this).set_user(sig, std::move(handler));
}

bool EventLoop::remove_signal_handler(int sig) {
  if (sig < 1 || sig >= NSIG) {
    throw std::invalid_argument("remove_signal_handler(): " + std::to_string(sig) +
                                " is not a signal number");
  }
  detail::check_thread(*this, "remove_signal_handler()");
  detail::SignalHandlers* handlers = detail::SignalHandlers::find(*this);
  return handlers && handlers->remove_user(sig);
}

}  // namespace fiberloop
