// barrier.hpp: Barrier, asyncio.Barrier — a meeting point for a fixed
// number of tasks.
#pragma once

#include <source_location>
#include <cstddef>

#include "fiberloop/condition.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop {

// Barrier blocks tasks in wait() until `parties` of them wait; then all go on
// together and the barrier refills for the next round. abort() breaks it and
// reset() sends the current waiters away with BrokenBarrierError.
//
// Example:
//   fiberloop::Barrier barrier(3);
//   ...in each of three tasks:
//   std::size_t index = barrier.wait();  // 0, 1 or 2; returns together
//
// Owner: not copyable, not movable.
class FIBERLOOP_API Barrier {
 public:
  // Barrier(parties) throws std::invalid_argument if parties is 0.
  explicit Barrier(std::size_t parties);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // wait() waits until `parties` tasks wait, and returns this task's arrival
  // index in [0, parties). A task arriving while the previous round drains
  // waits for the next round. Throws BrokenBarrierError if the barrier is or
  // becomes broken, or is reset while waiting; CancelledError if cancelled;
  // RuntimeError if the barrier is destroyed while the task waits.
  std::size_t wait(std::source_location where = std::source_location::current());
  // reset() returns the barrier to its empty state; the tasks waiting get
  // BrokenBarrierError. May wait for the internal lock.
  void reset();
  // abort() breaks the barrier: current and future wait() calls throw
  // BrokenBarrierError until reset(). May wait for the internal lock.
  void abort();

  std::size_t parties() const noexcept { return parties_; }
  // n_waiting() is the number of tasks waiting for the barrier to fill.
  std::size_t n_waiting() const noexcept { return state_ == State::filling ? count_ : 0; }
  bool broken() const noexcept { return state_ == State::broken; }

 private:
  enum class State { filling, draining, resetting, broken };
  std::size_t wait_locked(const detail::Watch& alive, std::source_location where);
  void block(std::source_location where);
  void wait_released(std::source_location where);
  void exit();

  Condition cond_;
  std::size_t parties_;
  State state_ = State::filling;
  std::size_t count_ = 0;
  // Watches of the calls in progress, which must not touch a destroyed barrier.
  detail::WatchList watches_;
};

}  // namespace fiberloop
