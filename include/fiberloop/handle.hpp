// handle.hpp: cancellable callbacks in the loop's ready queue and timer heap.
#pragma once

#include <cstdint>

#include "fiberloop/detail/inline_function.hpp"
#include "fiberloop/detail/object_pool.hpp"
#include "fiberloop/detail/ref.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop {

class EventLoop;

namespace detail {

class LoopCore;

// HandleState is one scheduled callback. Pooled and intrusive, so call_soon
// and call_later allocate nothing in steady state.
struct FIBERLOOP_API HandleState : RefCounted, Pooled {
  using Callback = InlineFunction<void(), 48>;

  // What the ready queue holds: a one-shot callback (call_soon, a timer), an
  // I/O callback that runs each time its fd is ready, or a task's step,
  // which the queue holds without a reference (TaskStateBase::step_).
  enum class Kind : std::uint8_t { once, repeating, task_step };

  HandleState(LoopCore* owner, Callback cb) noexcept : loop(owner), callback(std::move(cb)) {}
  // HandleState(owner) leaves the callback empty, for callback.emplace(): the
  // callable is built in place rather than moved in.
  explicit HandleState(LoopCore* owner, Kind k = Kind::once) noexcept : kind(k), loop(owner) {}

  // run() calls the callback; an exception goes to the loop's exception handler.
  void run() {
    running = true;
    try {
      callback();
    } catch (...) {
      running = false;
      callback_failed(loop);  // rethrows FiberUnwind
    }
    running = false;
    // A one-shot callback is spent: let go of what it captured now.
    if (kind == Kind::once || cancelled) callback.reset();
  }
  // run_step() runs a task's step (is_task_step()). Unlike run(), it touches
  // nothing after the callback: the step may end the task, and with it this
  // handle, a member of the task.
  void run_step() {
    LoopCore* owner = loop;
    try {
      callback();
    } catch (...) {
      callback_failed(owner);  // rethrows FiberUnwind
    }
  }
  bool is_task_step() const noexcept { return kind == Kind::task_step; }
  // cancel() marks it so the loop skips it, and drops the callback (and what it
  // captured) unless it is running right now.
  void cancel() noexcept;

  // The flags come first, in the reference count's padding: a handle is
  // 96 bytes, and each task embeds one (its step).
  bool cancelled = false;
  bool in_heap = false;  // timers: still in the loop's heap
  Kind kind = Kind::once;
  bool running = false;
  LoopCore* loop;
  // What a run reads (the flags, loop, warm, the callback's call and first
  // word) is in the first 48 bytes: one line of a task that embeds it.
  union {
    std::uint64_t seq = 0;  // timers: equal deadlines run in the order scheduled
    // warm, in a task's step (never a timer), is the task's Fiber, whose
    // first word is its saved context (Fiber::kContextFirst): the loop
    // prefetches both a few handles ahead, since with thousands of tasks in
    // flight each step's stack page is cold.
    const void* warm;
  };
  std::int64_t when_ns = 0;  // timers: deadline on the loop's clock
  Callback callback;

 private:
  // callback_failed(owner), called in a catch block, reports the exception
  // being handled to owner's exception handler, or rethrows it if it is the
  // FiberUnwind that unwinds a task's fiber.
  static void callback_failed(LoopCore* owner);
};

}  // namespace detail

// Handle is a callback scheduled with call_soon(). Copies share the callback.
//
// Example:
//   auto h = loop.call_soon([] { std::puts("never printed"); });
//   h.cancel();
class Handle {
 public:
  Handle() noexcept = default;

  // cancel() keeps the callback from running; a no-op once it ran.
  void cancel() noexcept {
    if (state_) state_->cancel();
  }
  // cancelled() tells whether cancel() was called.
  bool cancelled() const noexcept { return state_ && state_->cancelled; }
  explicit operator bool() const noexcept { return static_cast<bool>(state_); }

 protected:
  friend class EventLoop;
  explicit Handle(detail::Ref<detail::HandleState> state) noexcept : state_(std::move(state)) {}
  detail::Ref<detail::HandleState> state_;
};

// TimerHandle is a callback scheduled with call_later() or call_at().
class TimerHandle : public Handle {
 public:
  TimerHandle() noexcept = default;
  // when() is the loop time (seconds, as EventLoop::time()) it is due at.
  double when() const noexcept { return state_ ? static_cast<double>(state_->when_ns) / 1e9 : 0.0; }
  std::int64_t when_ns() const noexcept { return state_ ? state_->when_ns : 0; }

 private:
  friend class EventLoop;
  using Handle::Handle;
};

}  // namespace fiberloop
