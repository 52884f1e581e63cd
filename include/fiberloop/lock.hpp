// lock.hpp: Lock, asyncio.Lock — mutual exclusion between tasks of one loop.
#pragma once

#include <source_location>

#include "fiberloop/detail/waiters.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop {

// Lock is a non-reentrant mutex for tasks: acquire() parks the calling task
// (not the thread) until the lock is free. Waiters get it in FIFO order; a
// waiter cancelled after release() picked it passes it to the next one.
// It meets BasicLockable, so std::lock_guard / std::unique_lock are its RAII
// guards.
//
// Example:
//   fiberloop::Lock lock;
//   ...in a task:
//   std::lock_guard guard(lock);  // waits; released at the end of the scope
//
// Owner: not copyable, not movable (waiting tasks refer to it).
class FIBERLOOP_API Lock {
 public:
  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // acquire() waits until the lock is free and takes it. Throws
  // CancelledError if the task is cancelled while it waits (the lock is then
  // not held), RuntimeError outside a task or if the lock is destroyed while
  // the task waits. Uncontended, it never allocates, and yields only for the
  // cooperative budget (EventLoop::task_budget()).
  void acquire(std::source_location where = std::source_location::current());
  // release() frees the lock and wakes the first waiter. Throws RuntimeError
  // if the lock is not held.
  void release();
  // locked() is true while some task holds the lock.
  bool locked() const noexcept { return locked_; }

  // lock() / unlock() / try_lock() make Lock BasicLockable (std::lock_guard).
  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() noexcept;

 private:
  void wake_up_first();

  bool locked_ = false;
  detail::Waiters waiters_;
};

}  // namespace fiberloop
