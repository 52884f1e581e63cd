// timeout.hpp: timeout scopes, asyncio.timeout / timeout_at.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "fiberloop/await.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/handle.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop {

// Timeout is a deadline over a stretch of code in a task (asyncio.Timeout).
// On expiry the task is cancelled; the scope's end turns that cancellation
// into TimeoutError. A cancellation from outside stays a CancelledError even
// when it races with the expiry (told apart with cancelling()/uncancel()).
// Nested scopes each catch only their own expiry.
//
// C++ cannot throw from a destructor, so the end of the scope is written out:
// with_timeout(seconds, fn) does it for you and is the primary form. Code that
// uses the scope object itself ends it with exit(std::current_exception()) in
// a catch-all around the body; the destructor ends it quietly otherwise:
//
//   fiberloop::Timeout t = fiberloop::timeout(0.5);
//   try {
//     slow_work();
//   } catch (...) {
//     t.exit(std::current_exception());  // TimeoutError if t expired, else rethrows
//   }
//   if (t.expired()) ...
//
// A Timeout that expired and is left by an exception without exit(e) cannot
// turn it into TimeoutError: the exception goes on unchanged and the loop's
// exception handler reports the misuse.
//
// Owner: not copyable, not movable (its timer refers to it).
class FIBERLOOP_API Timeout {
 public:
  Timeout(const Timeout&) = delete;
  Timeout& operator=(const Timeout&) = delete;
  // ~Timeout() ends the scope as exit() does when no exception leaves it.
  ~Timeout();

  // when() is the deadline in loop time (EventLoop::time()), or nullopt for none.
  std::optional<double> when() const noexcept { return when_; }
  // reschedule(when) moves the deadline (nullopt: none; in the past: expire
  // on the next iteration). Throws RuntimeError unless the scope is active.
  void reschedule(std::optional<double> when);
  // expired() is true once the deadline passed and the task was cancelled.
  bool expired() const noexcept { return state_ == State::expiring || state_ == State::expired; }

  // exit() ends the scope normally (nothing to convert). Throws RuntimeError
  // if the scope was ended already or from another task.
  void exit();
  // exit(e) ends the scope left by exception e, and throws: TimeoutError if
  // e is the cancellation this scope caused, otherwise e itself.
  [[noreturn]] void exit(std::exception_ptr e);

 private:
  enum class State { active, expiring, expired, exited };
  friend Timeout timeout_at(std::optional<double> when);
  explicit Timeout(std::optional<double> when);
  // end(e) is asyncio's __aexit__; returns whether e is to become TimeoutError.
  bool end(const std::exception_ptr& e);
  void on_timeout();

  State state_ = State::active;
  std::optional<double> when_;
  AnyTask task_;
  int cancelling_;
  Handle handle_;
  int uncaught_ = 0;  // exceptions in flight on entry, to see an unwind in ~Timeout
};

// timeout_at(when) enters a scope that expires at loop time `when` (nullopt:
// never, until reschedule()). Throws RuntimeError outside a task.
FIBERLOOP_API Timeout timeout_at(std::optional<double> when);
// timeout(seconds) enters a scope that expires `seconds` from now (nullopt:
// never). Throws RuntimeError outside a task.
FIBERLOOP_API Timeout timeout(std::optional<double> seconds);

// timeout(duration) is timeout() with a std::chrono duration.
template <class Rep, class Period>
Timeout timeout(std::chrono::duration<Rep, Period> delay) {
  return timeout(std::chrono::duration<double>(delay).count());
}

namespace detail {

// run_in_timeout(t, fn) is the body of with_timeout(): fn() inside t, ended
// with exit() or exit(e) outside any catch block.
template <class Fn>
auto run_in_timeout(Timeout& t, Fn& fn) {
  using R = std::invoke_result_t<Fn&>;
  std::optional<std::conditional_t<std::is_void_v<R>, int, R>> result;
  std::exception_ptr error;
  try {
    if constexpr (std::is_void_v<R>) {
      fn();
    } else {
      result.emplace(fn());
    }
  } catch (const FiberUnwind&) {
    throw;
  } catch (...) {
    error = std::current_exception();
  }
  if (error) t.exit(error);
  t.exit();
  if constexpr (!std::is_void_v<R>) return R(std::move(*result));
}

}  // namespace detail

// with_timeout(seconds, fn) runs fn() in the calling task under a timeout
// scope and returns its result. Throws TimeoutError if the deadline passed
// while fn() was waiting (fn saw CancelledError there), or what fn() threw.
// A result fn() returns although the deadline passed wins over the timeout.
// nullopt: no deadline.
//
// Example:
//   try {
//     auto page = fiberloop::with_timeout(2.0, [&] { return fetch(url); });
//   } catch (const fiberloop::TimeoutError&) { ... }
template <class Fn>
auto with_timeout(std::optional<double> seconds, Fn&& fn) {
  Timeout t = timeout(seconds);
  return detail::run_in_timeout(t, fn);
}

// with_timeout(duration, fn) is with_timeout() with a std::chrono duration.
template <class Rep, class Period, class Fn>
auto with_timeout(std::chrono::duration<Rep, Period> delay, Fn&& fn) {
  Timeout t = timeout(delay);
  return detail::run_in_timeout(t, fn);
}

// with_timeout_at(when, fn) is with_timeout() with a deadline in loop time.
template <class Fn>
auto with_timeout_at(std::optional<double> when, Fn&& fn) {
  Timeout t = timeout_at(when);
  return detail::run_in_timeout(t, fn);
}

}  // namespace fiberloop
