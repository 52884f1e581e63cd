// async_signals_blocked.hpp (private): how the library starts its threads
// without ever becoming a target of a process-directed signal.
#pragma once

#include <signal.h>

#include <initializer_list>

namespace fiberloop::detail {

// AsyncSignalsBlocked blocks, while it lives, every signal on the calling
// thread but the synchronous ones (a fault is delivered to the thread that
// caused it: the stack-overflow reporter's SIGSEGV/SIGBUS handlers, a crash
// in a job). A thread started meanwhile inherits that mask from its first
// instruction, so no asynchronous signal (SIGINT, SIGTERM, SIGCHLD...) is
// ever delivered to a library thread: they reach the application's threads
// -- the loop thread, its signalfd, its handlers -- as if the library had
// none. Blocking inside the new thread instead would leave a window. The
// creator's mask comes back when the guard goes.
class AsyncSignalsBlocked {
 public:
  AsyncSignalsBlocked() noexcept {
    sigset_t async;
    ::sigfillset(&async);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) ::sigdelset(&async, sig);
    restore_ = ::pthread_sigmask(SIG_BLOCK, &async, &saved_) == 0;
  }
  ~AsyncSignalsBlocked() {
    if (restore_) ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  AsyncSignalsBlocked(const AsyncSignalsBlocked&) = delete;
  AsyncSignalsBlocked& operator=(const AsyncSignalsBlocked&) = delete;

 private:
  sigset_t saved_;
  bool restore_;
};

}  // namespace fiberloop::detail
