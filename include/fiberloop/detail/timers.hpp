// detail/timers.hpp: Timers, the loop's phase that turns due timers into ready callbacks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fiberloop/detail/loop_core.hpp"
#include "fiberloop/detail/timer_queue.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/handle.hpp"

namespace fiberloop::detail {

// Timers holds call_later/call_at's handles by deadline on the loop's
// clock and, once per iteration, moves the due ones to the end of
// the core's ready queue (as asyncio's _run_once does with _scheduled).
// Cancelled handles stay in the heap until they come up, unless they are
// most of it (asyncio's _MIN_SCHEDULED_TIMER_HANDLES rule): then they are
// dropped in bulk.
class FIBERLOOP_API Timers {
 public:
  explicit Timers(LoopCore& core) noexcept : core_(core) {}
  Timers(const Timers&) = delete;
  Timers& operator=(const Timers&) = delete;
  ~Timers() { clear(); }

  // deadline_after(delay) is now on the loop's clock (LoopCore::now_ns) +
  // delay seconds, rounded up (a timer never fires early); deadline_at(when)
  // is loop time `when` in nanoseconds. Both throw std::invalid_argument for
  // a NaN.
  std::int64_t deadline_after(double delay) const;
  static std::int64_t deadline_at(double when);

  // schedule(h, when_ns) queues the new handle h, due at when_ns, taking a
  // reference; schedule_after(h, delay) is due `delay` seconds from now
  // (throws std::invalid_argument for a NaN). Both check as a call_soon
  // does (closed loop, debug-mode thread).
  void schedule(HandleState* h, std::int64_t when_ns);
  void schedule_after(HandleState* h, double delay);

  // drop_cancelled() is the iteration's first phase: cancelled handles at
  // the front go, or all of them once they are most of the heap.
  void drop_cancelled() {
    if (!queue_.empty()) drop_cancelled_slow();
  }
  // timeout_ns() is how long the poll may sleep for the timers: until the
  // earliest deadline (at most a day), or -1 when there is none.
  std::int64_t timeout_ns() const;
  // next_deadline_ns() is the earliest deadline; the queue is not empty.
  std::int64_t next_deadline_ns() const { return queue_.front()->when_ns; }
  bool empty() const noexcept { return queue_.empty(); }
  // queue_due() moves the handles due at the iteration's clock reading
  // (LoopCore::iteration_ns) to the ready queue, in order.
  void queue_due() {
    if (!queue_.empty()) queue_due_slow();
  }
  // clear() cancels and drops every handle (the loop is closing).
  void clear() noexcept;

 private:
  // asyncio's _MIN_SCHEDULED_TIMER_HANDLES: below it, no bulk drop.
  static constexpr std::size_t kMinScheduled = 100;
  void drop_cancelled_slow();
  void queue_due_slow();

  LoopCore& core_;
  TimerQueue queue_;
  std::uint64_t seq_ = 0;  // equal deadlines run in the order scheduled
};

}  // namespace fiberloop::detail
