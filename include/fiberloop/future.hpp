// future.hpp: Future<T>, the result of an operation that has not finished yet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiberloop/detail/assert.hpp"
#include "fiberloop/detail/inline_function.hpp"
#include "fiberloop/detail/loop_core.hpp"
#include "fiberloop/detail/object_pool.hpp"
#include "fiberloop/detail/ref.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop {

class EventLoop;

// CallbackId names a done-callback for remove_done_callback().
using CallbackId = std::uint64_t;

namespace detail {

class FutureStateBase;

// Awaiter is what a future wakes when it completes, before any other
// done-callback: a task parked on it (asyncio's Task.__wakeup). The future
// knows only this; the task layer above implements it.
class Awaiter {
 public:
  // wakeup(fut) queues the step that resumes the awaiter at its wait for fut.
  virtual void wakeup(FutureStateBase& fut) = 0;

 protected:
  ~Awaiter() = default;
};

// throw_empty_future() throws InvalidStateError for an operation on an empty
// Future handle; out of line, so that the string stays out of callers.
[[noreturn]] FIBERLOOP_API void throw_empty_future();

// FutureStateBase is the shared state behind Future<T>, without the value.
//
// Invariant: status_ moves once, from pending to finished (value or exception
// set) or to cancelled. Callbacks registered while pending are scheduled with
// call_soon, in registration order, by that move — never run inline.
class FIBERLOOP_API FutureStateBase : public RefCounted, public Pooled {
 public:
  // 32 bytes inline: scheduling one wraps it with the future's reference in
  // a loop callback (48 bytes inline).
  using DoneCallback = InlineFunction<void(FutureStateBase&), 32>;
  enum class Status : std::uint8_t { pending, cancelled, finished };

  // Inline, as the destructor's common path: every future pays for them.
  explicit FutureStateBase(LoopCore& core) noexcept : link_(core.link().get()) {
    link_->add_ref();
  }
  virtual ~FutureStateBase() {
    if (log_traceback_) [[unlikely]]
      report_unretrieved("Future exception was never retrieved");
    if (link_->release()) [[unlikely]]
      delete link_;
  }

  bool done() const noexcept { return status_ != Status::pending; }
  bool cancelled() const noexcept { return status_ == Status::cancelled; }
  bool has_exception() const noexcept { return status_ == Status::finished && exception_; }
  bool has_value() const noexcept { return status_ == Status::finished && !exception_; }

  // cancel() is Future.cancel(); Task overrides it.
  virtual bool cancel(std::string message);
  // describe() names it in error reports: "Future" or "Task 'name'".
  virtual std::string describe() const;

  // check_settable() throws InvalidStateError if done (RuntimeError once
  // the loop is gone); call before filling the value.
  void check_settable(const char* operation) const {
    if (done() || !link_->core) [[unlikely]] throw_not_settable(operation);
  }
  // finish() marks a filled value as the result and schedules the callbacks.
  void finish() {
    status_ = Status::finished;
    // The common cases, one task awaiting or nobody: its step queued, or nothing.
    if (!first_callback_.id && !extras_ && link_->core) [[likely]] {
      if (first_waiter_) wake_first_waiter();
    } else {
      schedule_callbacks();
    }
  }
  void set_exception(std::exception_ptr e);
  // check_result() throws unless a value is there: InvalidStateError while
  // pending, CancelledError if cancelled, the stored exception if any.
  void check_result() {
    if (status_ == Status::finished && !exception_) [[likely]] {
      log_traceback_ = false;
    } else {
      check_result_slow();
    }
  }
  // exception() is the stored exception (nullptr if none); throws like check_result() otherwise.
  std::exception_ptr exception();
  // waiter_exception() is what an awaiting task must see raised: the stored
  // exception (now retrieved), a CancelledError, or nullptr for a value.
  std::exception_ptr waiter_exception() {
    if (status_ == Status::finished && !exception_) [[likely]] return nullptr;
    return waiter_exception_slow();
  }

  CallbackId add_done_callback(DoneCallback fn);
  std::size_t remove_done_callback(CallbackId id) noexcept;
  // add_waiter(task) is the done-callback of a task awaiting this future:
  // completion wakes the task directly, in its callback order. The task
  // outlives the entry (it is alive until it ends, and it ends only after
  // the wake-up, or after remove_waiter when abandoned).
  void add_waiter(Awaiter* task) {
    if (!first_waiter_ && !first_callback_.id && !extras_ && !done()) [[likely]] {
      first_waiter_ = task;
    } else {
      add_waiter_slow(task);
    }
  }
  void remove_waiter(Awaiter* task) noexcept;

  // loop() throws RuntimeError once the loop is destroyed.
  EventLoop& loop() const { return core().owner(); }
  LoopCore& core() const {
    if (!link_->core) [[unlikely]] throw_outlived();
    return *link_->core;
  }
  EventLoop* loop_or_null() const noexcept {
    return link_->core ? &link_->core->owner() : nullptr;
  }
  LoopCore* core_or_null() const noexcept { return link_->core; }
  // same_loop(other): both belong to one loop (each loop has one link).
  bool same_loop(const FutureStateBase& other) const noexcept { return link_ == other.link_; }

  // The flags come first, in the reference count's padding: every parked
  // task holds a future, so its size is memory per task.
 protected:
  Status status_ = Status::pending;
  bool log_traceback_ = false;  // an exception is set and nobody looked at it

 public:
  // result_taken_: a move-only value was moved out by take_result().
  bool result_taken_ = false;
  void* value_ = nullptr;  // the derived state's std::optional<T>; null for void

 private:
  // link_ is the loop's LoopLink (one reference): a future outliving its
  // loop sees null there, and a future costs the loop no bookkeeping. In
  // the first cache line, with the status: a task's step reads both.
  LoopLink* link_;

 protected:
  // recyclable(): finished with a value, nothing made on the side (see
  // TaskState::make()); reset_for_reuse(loop) makes it pending again, of loop.
  bool recyclable() const noexcept { return has_value() && !extras_; }
  void reset_for_reuse(LoopCore& core) noexcept {
    FIBERLOOP_ASSERT(!first_waiter_ && !first_callback_.id && !log_traceback_,
                     "a future reused while something still waits on it or its error");
    // (next_callback_id_ goes on: ids need only be unique per future.)
    status_ = Status::pending;
    result_taken_ = false;
    if (LoopLink* link = core.link().get(); link != link_) [[unlikely]] {
      if (link_->release()) delete link_;
      link_ = link;
      link_->add_ref();
    }
  }
  void mark_cancelled(std::string message);
  void schedule_callbacks();
  void drop_callbacks() noexcept;
  void report_unretrieved(const char* message) noexcept;

 public:
  // check_not_taken() throws InvalidStateError("result already taken") once it was.
  void check_not_taken() const {
    if (result_taken_) [[unlikely]] throw_taken();
  }

 protected:
  // cancel_message() is the message the future (or task) was cancelled
  // with; empty if none. set_cancel_message(m) replaces it.
  const std::string& cancel_message() const noexcept;
  void set_cancel_message(std::string message);

 private:
  struct Callback {
    DoneCallback fn;  // first: it is 16-byte aligned
    CallbackId id = 0;  // 0: no callback (first_callback_ is empty)
    Awaiter* waiter = nullptr;  // set instead of fn for an awaiting task
  };
  void add_callback(Callback c);
  void add_waiter_slow(Awaiter* task);
  void schedule(Callback& c);
  void wake_first_waiter() { std::exchange(first_waiter_, nullptr)->wakeup(*this); }
  [[noreturn]] void throw_not_settable(const char* operation) const;
  [[noreturn]] void throw_outlived() const;
  [[noreturn]] void throw_taken() const;
  void check_result_slow();
  std::exception_ptr waiter_exception_slow();
  // The first callback lives inline (id 0: none), so that one done-callback
  // allocates nothing.
  Callback first_callback_;
  // first_waiter_ is the task awaiting this future when it was the first to
  // register: completion queues its step before any other callback.
  Awaiter* first_waiter_ = nullptr;

 protected:
  std::exception_ptr exception_;  // in the second line: a task's step never reads it

 private:
  // Extras is what few futures use: a cancel message and the callbacks past
  // the first. Made on first use, it keeps a future at 128 bytes, not 176
  // (each parked task holds one), and its construction and destruction short.
  struct Extras {
    std::string cancel_message;
    std::vector<Callback> more_callbacks;
  };
  Extras& extras();
  // Out of line: the destructor of a future that never made one stays short.
  struct DeleteExtras {
    void operator()(Extras* extras) const noexcept;
  };
  std::unique_ptr<Extras, DeleteExtras> extras_;
  CallbackId next_callback_id_ = 1;
};

template <class T>
class FutureState final : public FutureStateBase {
 public:
  explicit FutureState(LoopCore& core) : FutureStateBase(core) { value_ = &value; }
  std::optional<T> value;
};

template <>
class FutureState<void> final : public FutureStateBase {
 public:
  using FutureStateBase::FutureStateBase;
};

}  // namespace detail

// Future<T> is a cheap copyable handle to the result of an operation, bound
// to one loop; create one with loop.create_future<T>(). Not thread-safe.
//
// Example:
//   auto fut = loop.create_future<std::string>();
//   loop.call_soon([fut]() mutable { fut.set_result("the result"); });
//   std::string r = loop.run_until_complete(fut);
template <class T>
class Future {
 public:
  using value_type = T;

  // Future() is an empty handle (valid() is false); every other call needs a state.
  Future() noexcept = default;
  explicit Future(detail::Ref<detail::FutureStateBase> state) noexcept : state_(std::move(state)) {}

  bool valid() const noexcept { return static_cast<bool>(state_); }
  // done() is true once the result, an exception or a cancellation is set.
  bool done() const { return state().done(); }
  bool cancelled() const { return state().cancelled(); }

  // result() returns the value. Throws InvalidStateError while pending or
  // once a move-only value was taken by await(), CancelledError if
  // cancelled, and rethrows a stored exception.
  decltype(auto) result() const {
    state().check_result();
    if constexpr (!std::is_void_v<T>) {
      state().check_not_taken();
      return static_cast<const T&>(**slot());
    }
  }

  // exception() is the stored exception, or nullptr if the future has a
  // value. Throws InvalidStateError while pending, CancelledError if cancelled.
  std::exception_ptr exception() const { return state().exception(); }

  // set_result(v) completes the future and schedules its callbacks.
  // Throws InvalidStateError if it is done already.
  // clang-format off
  template <class V = T>
    requires(!std::is_void_v<V>)
  void set_result(V value) const {
    // clang-format on
    state().check_settable("set_result");
    slot()->emplace(std::move(value));
    state_->finish();
  }
  // clang-format off
  template <class V = T>
    requires std::is_void_v<V>
  void set_result() const {
    // clang-format on
    state().check_settable("set_result");
    state_->finish();
  }

  // set_exception(e) completes the future with an exception.
  // Throws InvalidStateError if it is done already.
  void set_exception(std::exception_ptr e) const { state().set_exception(std::move(e)); }
  // clang-format off
  template <class E>
    requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
  void set_exception(E&& e) const {
    // clang-format on
    set_exception(std::make_exception_ptr(std::forward<E>(e)));
  }

  // cancel(msg) cancels a pending future and schedules its callbacks; returns
  // false if it was done already. The message reaches CancelledError.
  bool cancel(std::string message = {}) const { return state().cancel(std::move(message)); }

  // add_done_callback(fn) arranges fn(future) once done (scheduled with
  // call_soon at once if done already). Returns an id for remove_done_callback.
  // clang-format off
  template <class Fn>
    requires std::is_invocable_v<std::decay_t<Fn>&, Future<T>>
  CallbackId add_done_callback(Fn&& fn) const {
    // clang-format on
    return state().add_done_callback(
        [fn = std::forward<Fn>(fn)](detail::FutureStateBase& s) mutable {
          fn(Future<T>(detail::Ref(&s)));
        });
  }

  // remove_done_callback(id) returns how many callbacks it removed (0 or 1).
  std::size_t remove_done_callback(CallbackId id) const { return state().remove_done_callback(id); }

  // get_loop() is the loop this future belongs to.
  EventLoop& get_loop() const { return state().loop(); }

  detail::FutureStateBase* state_ptr() const noexcept { return state_.get(); }
  friend bool operator==(const Future& a, const Future& b) noexcept { return a.state_ == b.state_; }

 protected:
  detail::FutureStateBase& state() const {
    if (!state_) [[unlikely]]
      detail::throw_empty_future();
    return *state_;
  }
  auto* slot() const { return static_cast<std::optional<T>*>(state_->value_); }

  detail::Ref<detail::FutureStateBase> state_;

  template <class U>
  friend U take_result(const Future<U>& fut);
};

// take_result(fut) is the result as a value: a copy, or for a move-only T the
// value moved out. Only the first taker of a move-only value gets it; a later
// one (a second await, result()) throws InvalidStateError("result already
// taken") rather than see a moved-from value.
template <class T>
T take_result(const Future<T>& fut) {
  if constexpr (std::is_void_v<T>) {
    fut.result();
  } else if constexpr (std::is_copy_constructible_v<T>) {
    return fut.result();
  } else {
    detail::FutureStateBase& s = fut.state();
    s.check_result();
    s.check_not_taken();
    s.result_taken_ = true;
    return std::move(**fut.slot());
  }
}

}  // namespace fiberloop
