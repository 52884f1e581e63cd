// wait.hpp: wait, wait_for, as_completed and shield, as asyncio's.
#pragma once

#include <source_location>
#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiberloop/await.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/task.hpp"
#include "fiberloop/timeout.hpp"

namespace fiberloop {

// ReturnWhen says when wait() returns (asyncio's FIRST_COMPLETED, ...).
enum class ReturnWhen { first_completed, first_exception, all_completed };

// WaitResult<F> is what wait() returns: the futures done and those still
// pending, each in the order given. `auto [done, pending] = wait(...)`.
template <class F>
struct WaitResult {
  std::vector<F> done;
  std::vector<F> pending;
};

namespace detail {

// WaitCore is asyncio's _wait() without the types: it waits until
// return_when is met or the timeout passes. The futures are not cancelled.
FIBERLOOP_API void wait_core(const std::vector<FutureStateBase*>& futures,
                             std::optional<double> timeout, ReturnWhen return_when);

// cancel_and_wait(fut) cancels fut and waits until it is done (it may not
// end cancelled: a task can refuse). Does not throw what fut ended with.
FIBERLOOP_API void cancel_and_wait(FutureStateBase* fut);

// repeated_positions(states) is the positions, ascending, of the entries
// that repeat an earlier one: asyncio's set() of the futures, in the order
// given. Expected O(n) (a hash of the state pointers); allocates nothing when
// there is no repeat and at most 16 entries.
FIBERLOOP_API std::vector<std::size_t> repeated_positions(
    const std::vector<FutureStateBase*>& states);

// AsCompletedCore is what AsCompleted<F> shares with the done-callbacks of
// the futures: each callback knows its future's position, so a completion
// costs O(1).
class FIBERLOOP_API AsCompletedCore {
 public:
  AsCompletedCore(const std::vector<FutureStateBase*>& futures, std::optional<double> timeout);
  AsCompletedCore(const AsCompletedCore&) = delete;
  AsCompletedCore& operator=(const AsCompletedCore&) = delete;
  ~AsCompletedCore();
  // next() waits for the next future to complete and returns its position
  // in `futures`; throws TimeoutError once the timeout passed.
  std::size_t next();
  std::size_t left() const noexcept { return left_; }

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
  std::size_t left_;
};

template <class F>
concept Awaitable = requires {
  typename std::decay_t<F>::value_type;
}
&&std::is_base_of_v<Future<typename std::decay_t<F>::value_type>, std::decay_t<F>>;

// unique_futures(range) is the futures of range, each first occurrence
// kept, in order.
template <class R>
std::vector<std::ranges::range_value_t<R>> unique_futures(R&& range) {
  std::vector<std::ranges::range_value_t<R>> v;
  if constexpr (std::ranges::sized_range<R>) v.reserve(std::ranges::size(range));
  for (auto&& f : range) v.push_back(f);
  std::vector<FutureStateBase*> states;
  states.reserve(v.size());
  for (auto& f : v) states.push_back(f.state_ptr());
  std::vector<std::size_t> repeats = repeated_positions(states);
  if (!repeats.empty()) {
    std::size_t out = 0;
    std::size_t r = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (r < repeats.size() && repeats[r] == i) {
        ++r;
      } else {
        if (out != i) v[out] = std::move(v[i]);
        ++out;
      }
    }
    v.erase(v.begin() + static_cast<std::ptrdiff_t>(out), v.end());
  }
  return v;
}

}  // namespace detail

// wait(futures, timeout, return_when) waits, without cancelling anything,
// until return_when is met (first_completed: any done; first_exception: any
// failed — or all done; all_completed: all done) or `timeout` seconds passed
// (nullopt: no limit), and returns {done, pending}. Repeated futures count
// once. Throws std::invalid_argument for an empty range, CancelledError if
// the waiting task is cancelled (the futures are left running).
//
// Example:
//   auto [done, pending] = fiberloop::wait(tasks, 1.0, fiberloop::ReturnWhen::first_completed);
// clang-format off
template <std::ranges::input_range R>
  requires detail::Awaitable<std::ranges::range_value_t<R>>
auto wait(R&& futures, std::optional<double> timeout = std::nullopt,
          ReturnWhen return_when = ReturnWhen::all_completed) {
  // clang-format on
  auto fs = detail::unique_futures(futures);
  if (fs.empty()) throw std::invalid_argument("wait(): the set of futures is empty");
  std::vector<detail::FutureStateBase*> states;
  states.reserve(fs.size());
  for (auto& f : fs) states.push_back(f.state_ptr());
  detail::wait_core(states, timeout, return_when);
  WaitResult<std::ranges::range_value_t<R>> result;
  for (auto& f : fs) (f.done() ? result.done : result.pending).push_back(f);
  return result;
}
// clang-format off
template <std::ranges::input_range R>
  requires detail::Awaitable<std::ranges::range_value_t<R>>
auto wait(R&& futures, ReturnWhen return_when) {
  // clang-format on
  return wait(std::forward<R>(futures), std::nullopt, return_when);
}

// wait_for(fut, seconds) waits for fut at most `seconds` (nullopt: no limit)
// and returns its result. On timeout it cancels fut, waits until fut ended,
// and throws TimeoutError — unless fut produced a result anyway (it caught the
// cancellation, or finished in the same iteration): then that result is
// returned. Cancelling the waiting task cancels fut too. seconds <= 0 checks
// fut once without yielding if it is done.
//
// Example:
//   int v = fiberloop::wait_for(fiberloop::spawn(compute), 2.5);
// clang-format off
template <class F>
  requires detail::Awaitable<F>
auto wait_for(const F& fut, std::optional<double> seconds,
              std::source_location where = std::source_location::current()) {
  // clang-format on
  using T = typename F::value_type;
  Future<T> f(fut);
  if (seconds && *seconds <= 0) {
    if (f.done()) return take_result(f);
    detail::cancel_and_wait(f.state_ptr());
    try {
      return take_result(f);
    } catch (const CancelledError&) {
      throw TimeoutError("wait_for(): timed out");
    }
  }
  return with_timeout(seconds, [&] { return detail::await_as(f, "wait_for()", where); });
}

// wait_for(fn, seconds) runs fn() in the calling task under a timeout (as
// asyncio 3.12 awaits a coroutine in place): with_timeout(seconds, fn); with
// seconds <= 0 fn never runs and TimeoutError is thrown.
// clang-format off
template <class Fn>
  requires(!detail::Awaitable<Fn> && std::is_invocable_v<Fn&>)
auto wait_for(Fn&& fn, std::optional<double> seconds) {
  // clang-format on
  if (seconds && *seconds <= 0) {
    detail::require_task("wait_for()");
    throw TimeoutError("wait_for(): timed out");
  }
  return with_timeout(seconds, fn);
}

// wait_for(fut_or_fn, duration) is wait_for() with a std::chrono duration.
template <class F, class Rep, class Period>
auto wait_for(F&& what, std::chrono::duration<Rep, Period> timeout) {
  return wait_for(std::forward<F>(what),
                  std::optional<double>(std::chrono::duration<double>(timeout).count()));
}

// AsCompleted<F> yields the futures given to as_completed() in the order
// they complete; getting the next one waits for it.
//
// Example:
//   for (auto done : fiberloop::as_completed(tasks, 5.0)) use(done.result());
template <class F>
class AsCompleted {
 public:
  AsCompleted(std::vector<F> futures, std::optional<double> timeout)
      : futures_(std::move(futures)), core_(states(futures_), timeout) {}

  // next() waits for the next future to complete and returns it. Throws
  // TimeoutError once the timeout passed, std::out_of_range when all were
  // returned, CancelledError if the waiting task is cancelled.
  F next() {
    if (core_.left() == 0) throw std::out_of_range("as_completed(): every future was returned");
    return futures_[core_.next()];
  }
  // left() is how many futures next() has still to return.
  std::size_t left() const noexcept { return core_.left(); }

  class iterator {
   public:
    using value_type = F;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompleted* owner) : owner_(owner) {}
    F& operator*() {
      if (!current_) current_ = owner_->next();
      return *current_;
    }
    iterator& operator++() {
      if (!current_) owner_->next();
      current_.reset();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return !it.current_ && it.owner_->left() == 0;
    }

   private:
    AsCompleted* owner_ = nullptr;
    std::optional<F> current_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  static std::vector<detail::FutureStateBase*> states(const std::vector<F>& fs) {
    std::vector<detail::FutureStateBase*> v;
    v.reserve(fs.size());
    for (auto& f : fs) v.push_back(f.state_ptr());
    return v;
  }
  std::vector<F> futures_;
  detail::AsCompletedCore core_;
};

// as_completed(futures, timeout) iterates the futures (repeats counted once)
// in the order they complete; fetching the next waits for it, and throws
// TimeoutError once `timeout` seconds passed since the call. Nothing is
// cancelled.
// clang-format off
template <std::ranges::input_range R>
  requires detail::Awaitable<std::ranges::range_value_t<R>>
AsCompleted<std::ranges::range_value_t<R>> as_completed(
    R&& futures, std::optional<double> timeout = std::nullopt) {
  // clang-format on
  return AsCompleted<std::ranges::range_value_t<R>>(detail::unique_futures(futures), timeout);
}

// shield(fut) returns a new future that completes as fut does; cancelling
// the new one (or the task awaiting it) leaves fut running. A done fut is
// returned as it is.
//
// Example:
//   fiberloop::await(fiberloop::shield(save_task));  // a cancel here does not stop the save
// clang-format off
template <class F>
  requires detail::Awaitable<F>
Future<typename F::value_type> shield(const F& fut) {
  // clang-format on
  using T = typename F::value_type;
  Future<T> inner(fut);
  if (inner.done()) return inner;
  Future<T> outer = inner.get_loop().template create_future<T>();
  CallbackId id = inner.add_done_callback([outer](const Future<T>& in) {
    if (outer.cancelled()) {
      if (!in.cancelled()) in.exception();  // retrieved: no report
      return;
    }
    if (in.cancelled()) {
      outer.cancel();
    } else if (std::exception_ptr e = in.exception()) {
      outer.set_exception(e);
    } else if constexpr (std::is_void_v<T>) {
      outer.set_result();
    } else {
      outer.set_result(take_result(in));
    }
  });
  outer.add_done_callback([inner, id](const Future<T>&) {
    if (!inner.done()) inner.remove_done_callback(id);
  });
  return outer;
}

}  // namespace fiberloop
