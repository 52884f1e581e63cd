#include "fiberloop/handle.hpp"

#include "fiberloop/event_loop.hpp"

namespace fiberloop::detail {

void HandleState::callback_failed(EventLoop* owner) {
  try {
    throw;
  } catch (const FiberUnwind&) {
    throw;
  } catch (...) {
    owner->call_exception_handler({"Exception in callback", std::current_exception(), {}});
  }
}

void HandleState::cancel() noexcept {
  if (cancelled) return;
  cancelled = true;
  if (!running) callback.reset();
  if (in_heap) loop->timer_cancelled();
}

}  // namespace fiberloop::detail
