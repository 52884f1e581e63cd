#include "fiberloop/semaphore.hpp"

#include <stdexcept>

namespace fiberloop {

Semaphore::Semaphore(int value, const char* name) : value_(value), name_(name) {
  if (value < 0) throw std::invalid_argument("Semaphore initial value must be >= 0");
}

bool Semaphore::locked() const noexcept {
  if (value_ == 0) return true;
  for (const auto& w : waiters_) {
    if (!w.cancelled()) return true;
  }
  return false;
}

void Semaphore::acquire(std::source_location where) {
  detail::spend_budget();  // as Lock::acquire()
  if (!locked()) {
    --value_;
    return;
  }
  detail::require_task("Semaphore::acquire()");
  Future<void> fut = waiters_.add();
  std::exception_ptr error = detail::wait_on(waiters_, fut, name_, "acquire()", "Semaphore.acquire()", where);
  // Out of the queue before waking anyone, so the wake-up cannot be ours.
  waiters_.remove(fut);
  // A unit handed to us that we cannot take goes back to the pool.
  if (error && fut.done() && !fut.cancelled()) ++value_;
  // Waiters that arrived meanwhile had to queue behind us (FIFO): wake as
  // many as there are units now.
  while (value_ > 0 && wake_up_next()) {
  }
  if (error) std::rethrow_exception(error);
}

void Semaphore::release() {
  ++value_;
  wake_up_next();
}

bool Semaphore::wake_up_next() {
  for (auto& fut : waiters_) {
    if (!fut.done()) {
      --value_;
      fut.set_result();
      return true;
    }
  }
  return false;
}

void BoundedSemaphore::release() {
  if (value_ >= bound_) throw std::invalid_argument("BoundedSemaphore released too many times");
  Semaphore::release();
}

}  // namespace fiberloop
