#include "fiberloop/lock.hpp"

namespace fiberloop {

void Lock::acquire(std::source_location where) {
  // Counted even uncontended (the cooperative budget), before the check a
  // yield could change.
  detail::spend_budget();
  // Free, and nobody is owed it: a woken waiter that has not run yet holds a
  // done (not cancelled) future and keeps its place.
  if (try_lock()) return;
  detail::require_task("Lock::acquire()");
  Future<void> fut = waiters_.add();
  std::exception_ptr error = detail::wait_on(waiters_, fut, "Lock", "acquire()", "Lock.acquire()", where);
  waiters_.remove(fut);
  if (error) {
    // Woken and cancelled at once: the lock was handed to us, pass it on.
    if (!locked_) wake_up_first();
    std::rethrow_exception(error);
  }
  locked_ = true;
}

bool Lock::try_lock() noexcept {
  if (locked_) return false;
  for (auto& w : waiters_) {
    if (!w.cancelled()) return false;
  }
  locked_ = true;
  return true;
}

void Lock::release() {
  if (!locked_) throw RuntimeError("Lock::release(): the lock is not acquired");
  locked_ = false;
  wake_up_first();
}

void Lock::wake_up_first() {
  if (waiters_.empty()) return;
  Future<void>& first = waiters_.front();
  if (!first.done()) first.set_result();
}

}  // namespace fiberloop
