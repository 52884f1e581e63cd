#include "fiberloop/condition.hpp"

namespace fiberloop {
namespace {

// leave_destroyed(error) ends a wait() whose condition was destroyed: without
// touching the condition nor its lock, which may have gone with it.
[[noreturn]] void leave_destroyed(const std::exception_ptr& error) {
  detail::leave_destroyed(error, "Condition", "wait()");
}

// reacquire(lock, alive, error) takes the lock back after the wait for a
// notification, as wait() must even when that wait failed (error); a
// cancellation meanwhile replaces error, to be raised afterwards.
std::exception_ptr reacquire(Lock& lock, const detail::Watch& alive, std::exception_ptr error) {
  for (;;) {
    try {
      lock.acquire();
      break;
    } catch (const CancelledError&) {
      error = std::current_exception();
    } catch (const detail::WaitedOnDestroyed&) {
      // Our own lock, destroyed with the condition; else a shared lock
      // destroyed before the condition it serves.
      if (alive.gone()) leave_destroyed(error);
      throw;
    }
    if (alive.gone()) leave_destroyed(error);
  }
  if (alive.gone()) {
    // A shared lock outlives the condition: leave it as a waiter woken by
    // the destruction does, not held.
    lock.release();
    leave_destroyed(error);
  }
  return error;
}

}  // namespace

void Condition::acquire(std::source_location where) {
  bool own_lock = own_.has_value();  // read now: it is gone with the condition
  try {
    lock_->acquire(where);
  } catch (const detail::WaitedOnDestroyed&) {
    if (own_lock) throw detail::WaitedOnDestroyed("Condition", "acquire()");
    throw;
  }
}

void Condition::wait_as(const char* what, std::source_location where) {
  if (!locked()) throw RuntimeError("Condition::wait(): cannot wait on an un-acquired lock");
  detail::require_task("Condition::wait()");
  // Covers the reacquisition too: once the condition is gone, its lock may be.
  detail::Watch alive(waiters_.watches());
  Lock& lock = *lock_;
  release();
  std::exception_ptr error = wait_for_notification(what, where);
  if (alive.gone()) leave_destroyed(error);
  try {
    // The lock must be held again even if the wait was cancelled.
    error = reacquire(lock, alive, std::move(error));
  } catch (const FiberUnwind&) {
    if (!alive.gone()) wake(1);
    throw;
  }
  if (error) {
    // The failure may have come after this task was notified: make sure
    // another waiter gets the notification instead.
    wake(1);
    std::rethrow_exception(error);
  }
}

// wait_for_notification() returns what the wait ended with, null when
// notified; a destruction meanwhile too (the caller's watch tells).
std::exception_ptr Condition::wait_for_notification(const char* what,
                                                    std::source_location where) {
  try {
    Future<void> fut = waiters_.add();
    std::exception_ptr error = detail::wait_on(waiters_, fut, "Condition", "wait()", what, where);
    waiters_.remove(fut);
    return error;
  } catch (const FiberUnwind&) {
    throw;
  } catch (...) {
    return std::current_exception();
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
