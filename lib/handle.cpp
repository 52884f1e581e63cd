#include "fiberloop/handle.hpp"

#include "fiberloop/event_loop.hpp"

namespace fiberloop::detail {

void HandleState::run() {
  running = true;
  try {
    callback();
  } catch (const FiberUnwind&) {
    running = false;
    throw;
  } catch (...) {
    loop->call_exception_handler({"Exception in callback", std::current_exception(), {}});
  }
  running = false;
  // A one-shot callback is spent: let go of what it captured now.
  if (!repeating || cancelled) callback.reset();
}

void HandleState::cancel() noexcept {
  if (cancelled) return;
  cancelled = true;
  if (!running) callback.reset();
  if (in_heap) loop->timer_cancelled();
}

}  // namespace fiberloop::detail
