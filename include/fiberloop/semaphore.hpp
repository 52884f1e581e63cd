// semaphore.hpp: Semaphore and BoundedSemaphore, as asyncio's.
#pragma once

#include <source_location>

#include "fiberloop/detail/waiters.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop {

// Semaphore holds a counter: acquire() takes one unit, waiting (FIFO) while
// there is none; release() gives one back. A waiter cancelled after a unit was
// handed to it passes the unit on. BasicLockable, for std::lock_guard.
//
// Example:
//   fiberloop::Semaphore slots(3);   // at most three downloads at once
//   ...in each task:
//   std::lock_guard guard(slots);
//   download();
//
// Owner: not copyable, not movable.
class FIBERLOOP_API Semaphore {
 public:
  // Semaphore(value) throws std::invalid_argument if value < 0.
  explicit Semaphore(int value = 1) : Semaphore(value, "Semaphore") {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;
  virtual ~Semaphore() = default;

  // acquire() takes a unit, waiting until one is free. Throws CancelledError
  // if cancelled while waiting (no unit is then taken), RuntimeError outside a
  // task or if the semaphore is destroyed while the task waits. Never
  // allocates nor yields when a unit is free and nobody waits.
  void acquire(std::source_location where = std::source_location::current());
  // release() gives a unit back and wakes the first waiter.
  virtual void release();
  // locked() is true if acquire() would have to wait.
  bool locked() const noexcept;
  // value() is the counter (units free and not yet promised to a waiter).
  int value() const noexcept { return value_; }

  void lock() { acquire(); }
  void unlock() { release(); }

 protected:
  // name is the class's, for the error of a waiter whose semaphore is destroyed.
  Semaphore(int value, const char* name);

  int value_;

 private:
  bool wake_up_next();

  const char* name_;
  detail::Waiters waiters_;
};

// BoundedSemaphore is a Semaphore whose release() throws std::invalid_argument
// when it would raise the counter above its initial value.
class FIBERLOOP_API BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(int value = 1) : Semaphore(value, "BoundedSemaphore"), bound_(value) {}
  void release() override;

 private:
  int bound_;
};

}  // namespace fiberloop
