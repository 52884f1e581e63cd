#include "fiberloop/handle.hpp"

#include "fiberloop/detail/loop_core.hpp"
#include "fiberloop/errors.hpp"

namespace fiberloop::detail {

void HandleState::callback_failed(LoopCore* owner) {
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
  if (in_heap) loop->note_timer_cancelled();
}

}  // namespace fiberloop::detail
