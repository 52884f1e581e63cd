#include "fiberloop/condition.hpp"

namespace fiberloop {

void Condition::wait() {
  if (!locked()) throw RuntimeError("Condition::wait(): cannot wait on an un-acquired lock");
  detail::TaskStateBase::require_current("Condition::wait()");
  release();
  std::exception_ptr error;
  try {
    Future<void> fut = waiters_.add();
    error = detail::wait_on(waiters_, fut);
    waiters_.remove(fut);
  } catch (const FiberUnwind&) {
    throw;
  } catch (...) {
    error = std::current_exception();
  }
  // The lock must be held again even if the wait was cancelled; a
  // cancellation during the reacquisition is kept and raised afterwards.
  try {
    for (;;) {
      try {
        acquire();
        break;
      } catch (const CancelledError&) {
        error = std::current_exception();
      }
    }
  } catch (const FiberUnwind&) {
    wake(1);
    throw;
  }
  if (error) {
    // The failure may have come after this task was notified: make sure
    // another waiter gets the notification instead.
    wake(1);
    std::rethrow_exception(error);
  }
}

void Condition::notify(std::size_t n) {
  if (!locked()) throw RuntimeError("Condition::notify(): cannot notify on an un-acquired lock");
  wake(n);
}

void Condition::wake(std::size_t n) {
  std::size_t woken = 0;
  for (auto& fut : waiters_) {
    if (woken >= n) break;
    if (!fut.done()) {
      ++woken;
      fut.set_result();
    }
  }
}

}  // namespace fiberloop
