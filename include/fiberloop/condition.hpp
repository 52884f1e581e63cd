// condition.hpp: Condition, asyncio.Condition — wait for a notification
// while a Lock is released.
#pragma once

#include <source_location>
#include <optional>

#include "fiberloop/detail/waiters.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/lock.hpp"

namespace fiberloop {

// Condition lets tasks wait, with its lock released, until another task
// notifies them; each then returns from wait() holding the lock again.
// BasicLockable like Lock.
//
// Example:
//   fiberloop::Condition cond;
//   ...consumer task:
//   std::lock_guard guard(cond);
//   cond.wait_for([&] { return !items.empty(); });
//   ...producer task:
//   std::lock_guard guard(cond);
//   items.push_back(x);
//   cond.notify();
//
// Owner: not copyable, not movable.
class FIBERLOOP_API Condition {
 public:
  // Condition() uses a lock of its own; Condition(lock) shares `lock`, which
  // must outlive it.
  Condition() : own_(std::in_place), lock_(&*own_) {}
  explicit Condition(Lock& lock) : lock_(&lock) {}
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  // acquire() is the lock's; a waiter whose condition is destroyed gets
  // RuntimeError, as in wait().
  void acquire(std::source_location where = std::source_location::current());
  void release() { lock_->release(); }
  bool locked() const noexcept { return lock_->locked(); }
  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() noexcept { return lock_->try_lock(); }

  // wait() releases the lock, waits for notify(), and takes the lock again
  // before it returns — also when it throws: cancelled while waiting, it
  // still reacquires the lock, then throws CancelledError. Whatever ends a
  // wait with an exception passes a pending notification on to the next
  // waiter (a spurious wake-up rather than a lost one). Throws RuntimeError
  // if the lock is not held, or — without the lock — if the condition is
  // destroyed while the task waits.
  void wait(std::source_location where = std::source_location::current()) { wait_as("Condition.wait()", where); }
  // wait_for(pred) waits until pred() is true (checked first, then after each
  // wake-up) and returns its last value. Same errors as wait().
  template <class Pred>
  auto wait_for(Pred pred, std::source_location where = std::source_location::current()) {
    return wait_for_as(pred, "Condition.wait()", where);
  }
  // notify(n) wakes up to n waiters; they return once they get the lock,
  // which the caller still holds. Throws RuntimeError if the lock is not held.
  void notify(std::size_t n = 1);
  // notify_all() wakes every waiter.
  void notify_all() { notify(waiters_.size()); }

 private:
  // The waits as a primitive built on this one names them (Barrier).
  friend class Barrier;
  void wait_as(const char* what, std::source_location where);
  template <class Pred>
  auto wait_for_as(Pred& pred, const char* what, std::source_location where) {
    auto result = pred();
    while (!result) {
      wait_as(what, where);
      result = pred();
    }
    return result;
  }
  std::exception_ptr wait_for_notification(const char* what, std::source_location where);
  void wake(std::size_t n);

  std::optional<Lock> own_;
  Lock* lock_;
  detail::Waiters waiters_;
};

}  // namespace fiberloop
