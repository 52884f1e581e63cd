#include <signal.h>

#include "fiberloop/detail/signal_handlers.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/signals.hpp"

namespace fiberloop::detail {

struct CtrlC::State {
  explicit State(AnyTask task) : main(std::move(task)) {}
  AnyTask main;
  bool interrupted = false;
};

namespace {

bool sigint_has_default_action() {
  struct sigaction current {};
  if (::sigaction(SIGINT, nullptr, &current) != 0) return false;
  return !(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_DFL;
}

void on_interrupt(EventLoop& loop, CtrlC::State& state) {
  // Either way SIGINT gets its default action back: from now on Ctrl-C
  // ends the process at once, even with the loop stuck in a task.
  loop.remove_signal_handler(SIGINT);
  if (state.main.done()) {
    ::raise(SIGINT);  // the shutdown is under way: this is the second Ctrl-C
    return;
  }
  state.interrupted = true;
  state.main.cancel();
}

}  // namespace

CtrlC::CtrlC(EventLoop& loop, AnyTask main) {
  if (!sigint_has_default_action()) return;
  auto state = std::make_shared<State>(std::move(main));
  try {
    // Not a wake-up source: an operator's Ctrl-C is no event a test's
    // virtual clock should wait for (EventLoop::set_virtual_time).
    SignalHandlers::of(loop).set_user(
        SIGINT, HandleState::Callback([&loop, s = state] { on_interrupt(loop, *s); }), false);
  } catch (const RuntimeError&) {
    return;  // another loop handles SIGINT: it is that loop's to answer
  }
  state_ = std::move(state);
}

bool CtrlC::interrupted() const noexcept { return state_ && state_->interrupted; }

}  // namespace fiberloop::detail
