// submit.hpp: calls between loops — submit() and run_on(), asyncio's
// run_coroutine_threadsafe for loops that each own a thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "fiberloop/await.hpp"
#include "fiberloop/completer.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop {
namespace detail {

// RemoteCall is one submit() in flight: made on the caller's thread, run as
// a task on the target's. Which thread touches what:
// - the target's thread: call (run and destroyed there), running_, the
//   task that runs it;
// - the caller's thread: the future (through the Completer, which posts
//   the outcome back) and the done-callback that forwards a cancellation;
// - any thread: the reference count (the last owner deletes) and
//   cancel_requested_ (set by the caller, read by the target).
// A task's futures never cross threads: only this block does.
class FIBERLOOP_API RemoteCallBase {
 public:
  explicit RemoteCallBase(std::shared_ptr<ThreadsafeQueue> target_inbox) noexcept
      : target_inbox_(std::move(target_inbox)) {}
  RemoteCallBase(const RemoteCallBase&) = delete;
  RemoteCallBase& operator=(const RemoteCallBase&) = delete;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // post_start() hands one reference to the target loop, which starts the
  // task. Caller's thread. Throws RuntimeError if the target loop is closed.
  void post_start();
  // post_cancel() asks the target loop to cancel the task; nothing if that
  // loop is closed (its tasks are gone). Caller's thread.
  void post_cancel() noexcept;

 protected:
  virtual ~RemoteCallBase() = default;
  // run() is the task's body on the target's thread.
  virtual void run() = 0;
  // refuse() completes the future when the target could not start the task.
  virtual void refuse(std::exception_ptr why) noexcept = 0;

  // The body's frame: registers the running task for cancel requests and
  // says whether a request came before it started.
  class Running {
   public:
    explicit Running(RemoteCallBase& call);
    ~Running() { call_.running_.reset(); }
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;

   private:
    RemoteCallBase& call_;
  };
  bool cancel_requested() const noexcept {
    return cancel_requested_.load(std::memory_order_acquire);
  }

 private:
  void start() noexcept;          // target's thread: create the task
  void cancel_running() noexcept;  // target's thread

  std::atomic<std::uint32_t> refs_{1};
  // Set on the caller's thread when it cancels, before the request is
  // posted, so that a call not yet started never runs fn even when its
  // start is already queued on the target ahead of the request.
  std::atomic<bool> cancel_requested_{false};
  std::shared_ptr<ThreadsafeQueue> target_inbox_;
  // Target's thread only:
  std::optional<AnyTask> running_;  // the task, while its body runs
};

// RemoteRef is one counted reference to a RemoteCall, movable across threads.
class RemoteRef {
 public:
  explicit RemoteRef(RemoteCallBase* call) noexcept : call_(call) {}
  RemoteRef(RemoteRef&& o) noexcept : call_(std::exchange(o.call_, nullptr)) {}
  RemoteRef& operator=(RemoteRef&&) = delete;
  ~RemoteRef() {
    if (call_) call_->release();
  }
  RemoteCallBase* operator->() const noexcept { return call_; }

 private:
  RemoteCallBase* call_;
};

template <class R, class Call>
class RemoteCall final : public RemoteCallBase {
 public:
  RemoteCall(std::shared_ptr<ThreadsafeQueue> target_inbox, Call call, Completer<R> completer)
      : RemoteCallBase(std::move(target_inbox)),
        call_(std::move(call)),
        completer_(std::move(completer)) {}

 private:
  ~RemoteCall() override {
    if (completer_.valid())
      refuse(std::make_exception_ptr(
          RuntimeError("submit(): the target loop closed before the function ran")));
  }

  void run() override {
    Running running(*this);
    if (cancel_requested()) {  // called off before its task got to run
      call_.reset();
      completer_.cancel();
      return;
    }
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(std::move(*call_));
        call_.reset();
        completer_.set_result();
      } else {
        R value = std::invoke(std::move(*call_));
        call_.reset();
        completer_.set_result(std::move(value));
      }
    } catch (const CancelledError&) {
      call_.reset();
      if (completer_.valid()) completer_.cancel();
      throw;  // the remote task ends cancelled, as it was
    } catch (...) {
      call_.reset();
      if (completer_.valid()) completer_.set_exception(std::current_exception());
    }
  }

  void refuse(std::exception_ptr why) noexcept override {
    try {
      completer_.set_exception(std::move(why));
    } catch (...) {
      // Out of memory: the completer's destructor still fails the future.
    }
  }

  std::optional<Call> call_;
  Completer<R> completer_;
};

}  // namespace detail

// submit(target, fn, args...) runs fn(args...) as a task on the loop
// `target`, which runs on another thread, and returns a Future<R> of the
// *caller's* loop that completes when fn has finished there: its value, its
// exception (the same object, rethrown here) or, if the remote task was
// cancelled, a cancelled future. Cancelling the returned future cancels the
// remote task. fn and the arguments are moved to the target's thread and
// destroyed there; no Future handle ever crosses a thread (a Completer
// carries the outcome back). asyncio's run_coroutine_threadsafe, but the
// caller waits on its own loop instead of blocking a thread.
//
// Call it from a task or callback on a running loop (RuntimeError
// otherwise). target must be alive during the call (as for
// call_soon_threadsafe); it may close or be destroyed afterwards: the call
// is then dropped and the future fails with RuntimeError, and a future whose
// loop closed is let go. Throws RuntimeError at once if target is closed.
// With target the caller's own loop it is create_task().
//
// Cost: three allocations and two cross-thread posts per call; a burst of
// calls to one loop wakes it once (docs/threads.md).
//
// Example (inside a task of a LoopGroup):
//   auto sum = fiberloop::submit(group.loop(1), [](int a, int b) { return a + b; }, 2, 3);
//   int five = fiberloop::await(sum);
// clang-format off
template <class Fn, class... Args>
  requires detail::InvocableWithCopies<Fn, Args...>
Future<detail::TaskResult<Fn, Args...>> submit(EventLoop& target, Fn&& fn, Args&&... args) {
  // clang-format on
  using R = detail::TaskResult<Fn, Args...>;
  static_assert(!std::is_reference_v<R>, "submit(): fn must return a value, not a reference");
  EventLoop& here = get_running_loop();
  auto call = [fn = std::forward<Fn>(fn), ... args = std::forward<Args>(args)]() mutable -> R {
    return std::invoke(std::move(fn), std::move(args)...);
  };
  if (&target == &here) return here.create_task(std::move(call));
  Future<R> future = here.create_future<R>();
  auto* remote = new detail::RemoteCall<R, decltype(call)>(target.core().inbox(),
                                                           std::move(call), Completer<R>(future));
  detail::RemoteRef watch(remote);  // the caller side's reference
  try {
    remote->post_start();
  } catch (...) {
    future.cancel();  // nobody will see this future: the refusal is the exception
    throw;
  }
  future.add_done_callback([watch = std::move(watch)](const Future<R>& f) {
    if (f.cancelled()) watch->post_cancel();
  });
  return future;
}

// run_on(target, fn, args...) is await(submit(target, fn, args...)): inside
// a task, fn runs on target's loop and this task waits for its result;
// cancelling this task cancels the remote one.
template <class Fn, class... Args>
  requires detail::InvocableWithCopies<Fn, Args...>
detail::TaskResult<Fn, Args...> run_on(EventLoop& target, Fn&& fn, Args&&... args) {
  return detail::await_as(submit(target, std::forward<Fn>(fn), std::forward<Args>(args)...),
                          "run_on()", std::source_location::current());
}

}  // namespace fiberloop
