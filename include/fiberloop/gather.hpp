// gather.hpp: gather(), asyncio.gather — wait for several futures or tasks
// and collect their results.
#pragma once

#include <cstddef>
#include <exception>
#include <iterator>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "fiberloop/await.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop {

// ReturnExceptions, given as gather()'s last argument, is asyncio's
// return_exceptions=True: every result comes back as an Outcome, failures
// included, instead of the first failure propagating.
struct ReturnExceptions {};
inline constexpr ReturnExceptions return_exceptions{};

// Outcome<T> is a value or the exception that took its place (T = void
// holds std::monostate).
template <class T>
class Outcome {
 public:
  using value_type = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

  explicit Outcome(value_type value) : v_(std::in_place_index<0>, std::move(value)) {}
  explicit Outcome(std::exception_ptr e) : v_(std::in_place_index<1>, std::move(e)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  // value() is the value; rethrows the exception if there is one instead.
  value_type& value() & {
    if (!has_value()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  const value_type& value() const& {
    if (!has_value()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  value_type&& value() && { return std::move(value()); }
  // exception() is the exception, or null for a value.
  std::exception_ptr exception() const noexcept { return has_value() ? nullptr : std::get<1>(v_); }

 private:
  std::variant<value_type, std::exception_ptr> v_;
};

namespace detail {

// GatheringState is asyncio's _GatheringFuture: done once every child is
// (or at the first failure, unless return_exceptions); cancelling it cancels
// the children, and it then ends with CancelledError once they all ended.
class FIBERLOOP_API GatheringState final : public FutureStateBase {
 public:
  GatheringState(EventLoop& loop, bool return_exceptions)
      : FutureStateBase(loop.core()), return_exceptions_(return_exceptions) {}

  // reserve(n) makes room for n children.
  void reserve(std::size_t n) { children_.reserve(n); }
  // add(child) takes one argument of gather(); the caller passes each child
  // once (await_gathering() drops the repeats first: they count once).
  void add(FutureStateBase* child);
  // start() runs the completion of the children that were done already.
  void start();
  bool cancel(std::string message) override;
  std::string describe() const override { return "gather()"; }

 private:
  void child_done(FutureStateBase& child);

  std::vector<Ref<FutureStateBase>> children_;
  std::vector<FutureStateBase*> done_at_start_;
  std::size_t finished_ = 0;
  bool return_exceptions_;
  bool cancel_requested_ = false;
};

// await_gathering(loop, return_all, children) waits as gather() does for
// the children (not empty); throws what gather() must throw.
FIBERLOOP_API void await_gathering(EventLoop& loop, bool return_exceptions,
                                   const std::vector<FutureStateBase*>& children);

template <class F>
concept FutureLike = requires {
  typename std::decay_t<F>::value_type;
}
&&std::is_base_of_v<Future<typename std::decay_t<F>::value_type>, std::decay_t<F>>;

template <class A>
concept Gatherable = FutureLike<A> || std::is_same_v<std::decay_t<A>, ReturnExceptions> ||
                     std::is_invocable_v < std::decay_t<A>
& > ;

// as_future(a) is a future for one argument of gather(): a future or task
// as is, a callable spawned as a task (asyncio wraps a coroutine in a task).
template <class A>
auto as_future(A&& a) {
  if constexpr (FutureLike<A>) {
    return Future<typename std::decay_t<A>::value_type>(a);
  } else {
    return Future<typename decltype(spawn(std::forward<A>(a)))::value_type>(
        spawn(std::forward<A>(a)));
  }
}

template <class T>
using Gathered = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
Gathered<T> gathered_value(const Future<T>& f) {
  if constexpr (std::is_void_v<T>) {
    f.result();
    return {};
  } else {
    return take_result(f);
  }
}

template <class T>
Outcome<T> gathered_outcome(const Future<T>& f) {
  try {
    return Outcome<T>(gathered_value(f));
  } catch (const FiberUnwind&) {
    throw;
  } catch (...) {
    return Outcome<T>(std::current_exception());
  }
}

template <bool ReturnAll, class... Ts>
auto gather_futures(const Future<Ts>&... futs) {
  if constexpr (sizeof...(Ts) > 0) {
    await_gathering(get_running_loop(), ReturnAll, {futs.state_ptr()...});
  }
  if constexpr (ReturnAll) {
    return std::tuple<Outcome<Ts>...>{gathered_outcome(futs)...};
  } else {
    return std::tuple<Gathered<Ts>...>{gathered_value(futs)...};
  }
}

}  // namespace detail

// gather(a, b, ...) waits for every future or task given (a callable is
// spawned as a task first) and returns their results as a std::tuple, in
// argument order; a void result is a std::monostate. The first exception (a
// child's CancelledError included) propagates at once while the other
// children keep running, as in asyncio. With ReturnExceptions{} as the last
// argument, it waits for all and returns a tuple of Outcome<T> instead.
// Cancelling the task that waits in gather() cancels the children still
// running; gather() then throws CancelledError once they ended. Throws
// RuntimeError outside a task.
//
// Example:
//   auto [a, b] = fiberloop::gather(fiberloop::spawn(fetch, 1), fiberloop::spawn(fetch, 2));
// clang-format off
template <class... Args>
  requires(detail::Gatherable<Args> && ...)
auto gather(Args&&... args) {
  // clang-format on
  using Last =
      typename decltype((std::type_identity<void>{}, ..., std::type_identity<Args>{}))::type;
  if constexpr (std::is_same_v<std::decay_t<Last>, ReturnExceptions>) {
    auto refs = std::forward_as_tuple(std::forward<Args>(args)...);
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return detail::gather_futures<true>(detail::as_future(
          std::forward<std::tuple_element_t<I, decltype(refs)>>(std::get<I>(refs)))...);
    }
    (std::make_index_sequence<sizeof...(Args) - 1>{});
  } else {
    return detail::gather_futures<false>(detail::as_future(std::forward<Args>(args))...);
  }
}

namespace detail {

template <bool ReturnAll, class R>
auto gather_range(R&& range) {
  using T = typename std::ranges::range_value_t<R>::value_type;
  std::vector<Future<T>> futs;
  if constexpr (std::ranges::sized_range<R>) futs.reserve(std::ranges::size(range));
  for (auto&& f : range) futs.push_back(Future<T>(f));
  using Item = std::conditional_t<ReturnAll, Outcome<T>, Gathered<T>>;
  std::vector<Item> results;
  if (futs.empty()) return results;
  std::vector<FutureStateBase*> states;
  states.reserve(futs.size());
  for (auto& f : futs) states.push_back(f.state_ptr());
  await_gathering(get_running_loop(), ReturnAll, states);
  results.reserve(futs.size());
  for (auto& f : futs) {
    if constexpr (ReturnAll) {
      results.push_back(gathered_outcome(f));
    } else {
      results.push_back(gathered_value(f));
    }
  }
  return results;
}

template <class R>
concept FutureRange =
    std::ranges::input_range<R> && !Gatherable<R> && FutureLike<std::ranges::range_value_t<R>>;

}  // namespace detail

// gather(range) is gather() over a range of futures or tasks of one result
// type: a std::vector of results in range order (of Outcome<T> with
// ReturnExceptions{}). An empty range returns an empty vector at once.
// clang-format off
template <class R>
  requires detail::FutureRange<R>
auto gather(R&& range) {
  // clang-format on
  return detail::gather_range<false>(std::forward<R>(range));
}
// clang-format off
template <class R>
  requires detail::FutureRange<R>
auto gather(R&& range, ReturnExceptions) {
  // clang-format on
  return detail::gather_range<true>(std::forward<R>(range));
}

}  // namespace fiberloop
