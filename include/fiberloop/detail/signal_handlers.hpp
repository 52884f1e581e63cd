// detail/signal_handlers.hpp: a loop's signal handlers over one signalfd (signals.hpp).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>

#include "fiberloop/event_loop.hpp"

namespace fiberloop::detail {

// SignalHandlers is a loop's extension: the signals it handles, each with
// the user's handler (add_signal_handler) and the library's own hook (the
// child watcher's SIGCHLD), and what to restore when the signal is let go.
class SignalHandlers final : public LoopExtension {
 public:
  // of(loop) is the loop's, made on first use; find(loop) null if none.
  static SignalHandlers& of(EventLoop& loop);
  static SignalHandlers* find(EventLoop& loop) noexcept;

  explicit SignalHandlers(EventLoop& loop) noexcept : loop_(loop) {}
  ~SignalHandlers() override;

  // set_user(sig, fn, wakes) sets the handler add_signal_handler() sets.
  // wakes: the signal is something the program waits for; run()'s Ctrl-C
  // handler is not, so virtual time still jumps with it set.
  void set_user(int sig, HandleState::Callback handler, bool wakes = true);
  bool remove_user(int sig);
  // set_hook(sig, fn) runs fn (noexcept, on the loop's thread, inside the
  // signalfd's reader callback) whenever sig arrives, beside any user handler.
  void set_hook(int sig, std::function<void()> hook);
  void remove_hook(int sig) noexcept;
  // handled() is the signals held now: a child gets them back at default.
  sigset_t handled() const noexcept { return mask_; }

  void close() noexcept override;
  // quiet_fds(): the signalfd, unless a handler that wakes is on it (the
  // child watcher's hook speaks for itself through its holds_time()).
  std::size_t quiet_fds() const noexcept override;

 private:
  struct Slot {
    std::shared_ptr<HandleState::Callback> user;
    bool user_wakes = true;
    std::function<void()> hook;
    struct sigaction previous;
    bool was_blocked = false;
  };
  Slot& claim(int sig, const char* who);
  void release_if_unused(int sig) noexcept;
  void release(int sig, Slot& slot) noexcept;
  void set_fd_mask();
  void on_readable() noexcept;

  EventLoop& loop_;
  int fd_ = -1;  // the signalfd, made with the first slot, kept until close()
  sigset_t mask_{};
  std::map<int, Slot> slots_;
};

}  // namespace fiberloop::detail
