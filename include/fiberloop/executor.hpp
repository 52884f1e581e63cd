// executor.hpp: run blocking functions on a thread pool — run_in_executor, to_thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiberloop/await.hpp"
#include "fiberloop/completer.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"

namespace fiberloop {
namespace detail {

// ExecutorJob is one submitted function. run() is called at most once, on a
// worker; a job destroyed without running was dropped by a shutdown.
class FIBERLOOP_API ExecutorJob {
 public:
  virtual ~ExecutorJob() = default;
  virtual void run() noexcept = 0;
};

}  // namespace detail

// ThreadPoolExecutor is a bounded pool of threads, asyncio's default executor
// (concurrent.futures.ThreadPoolExecutor): threads start on demand, up to
// max_workers, and stay until shutdown(). Every loop has a default one (see
// default_executor()), which its close() shuts down. Its threads are born
// with every asynchronous signal blocked (all but SIGSEGV, SIGBUS, SIGFPE,
// SIGILL, SIGTRAP, SIGSYS): SIGINT and the like reach the application's own
// threads (the loop thread, a signalfd), never a worker.
//
// Example:
//   fiberloop::ThreadPoolExecutor pool(4);
//   auto fut = fiberloop::run_in_executor(loop, pool, [] { return slow_checksum(); });
//
// Owner: not copyable, not movable. submit() and shutdown() are thread-safe.
class FIBERLOOP_API ThreadPoolExecutor {
 public:
  // ThreadPoolExecutor(n) allows up to n threads. Throws std::invalid_argument for 0.
  explicit ThreadPoolExecutor(std::size_t max_workers = default_max_workers());
  // ~ThreadPoolExecutor() is shutdown().
  ~ThreadPoolExecutor();
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  // default_max_workers() is Python's default: min(32, cores + 4).
  static std::size_t default_max_workers() noexcept;
  std::size_t max_workers() const noexcept { return max_workers_; }
  // thread_count() is how many threads have been started so far.
  std::size_t thread_count() const;

  // submit(job) queues a job for a worker, starting a thread if none is idle
  // and the bound allows. Throws RuntimeError after shutdown(), and
  // std::system_error if no thread exists and none can be started.
  void submit(std::unique_ptr<detail::ExecutorJob> job);

  // shutdown() drops the queued jobs that no worker has started (their
  // futures fail with RuntimeError, when their loop still runs), waits for
  // the running ones to return and joins every thread. Idempotent. A job
  // that waits for something only the loop thread can do deadlocks it.
  void shutdown() noexcept;

 private:
  void worker_main();

  const std::size_t max_workers_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<detail::ExecutorJob>> queue_;  // guarded by mutex_
  std::vector<std::thread> threads_;                        // guarded by mutex_
  std::size_t idle_ = 0;                                    // guarded by mutex_
  bool shutdown_ = false;                                   // guarded by mutex_
};

namespace detail {

// FunctionJob runs `call` on a worker and posts its outcome through a
// Completer: the future is never touched off its loop's thread. The function
// and its arguments are destroyed on the worker, right after the call.
template <class R, class Call>
class FunctionJob final : public ExecutorJob {
 public:
  FunctionJob(Call call, Completer<R> completer, std::shared_ptr<std::atomic<bool>> skip)
      : call_(std::move(call)), completer_(std::move(completer)), skip_(std::move(skip)) {}

  ~FunctionJob() override {
    if (!completer_.valid()) return;
    try {
      completer_.set_exception(
          RuntimeError("run_in_executor(): the executor shut down before the function ran"));
    } catch (...) {
      // Out of memory: the completer's own destructor still fails the future.
    }
  }

  void run() noexcept override {
    if (skip_->load(std::memory_order_relaxed)) {
      // Cancelled before it started: it never runs, as asyncio cancels a
      // concurrent future still pending. The completer's report is dropped.
      call_.reset();
      return;
    }
    std::exception_ptr error;
    [[maybe_unused]] std::optional<std::conditional_t<std::is_void_v<R>, int, R>> value;
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(std::move(*call_));
      } else {
        value.emplace(std::invoke(std::move(*call_)));
      }
    } catch (...) {
      error = std::current_exception();
    }
    call_.reset();
    try {
      if (error) {
        completer_.set_exception(std::move(error));
      } else if constexpr (std::is_void_v<R>) {
        completer_.set_result();
      } else {
        completer_.set_result(std::move(*value));
      }
    } catch (...) {
      // The post itself failed (out of memory): the completer, still valid if
      // the value could not be stored, fails the future from ~FunctionJob.
    }
  }

 private:
  std::optional<Call> call_;
  Completer<R> completer_;
  std::shared_ptr<std::atomic<bool>> skip_;  // set on the loop thread when the future is cancelled
};

// ExecutorResult<Fn, Args...> is what fn returns when called, as std::thread
// calls it, with rvalues of its decayed copies.
template <class Fn, class... Args>
using ExecutorResult = std::invoke_result_t<std::decay_t<Fn>&&, std::decay_t<Args>&&...>;

}  // namespace detail

// default_executor(loop) is the loop's own ThreadPoolExecutor (default size),
// made on first use and shut down (joined) by loop.close(). Loop thread only;
// throws RuntimeError if the loop is closed.
FIBERLOOP_API ThreadPoolExecutor& default_executor(EventLoop& loop);

// run_in_executor(loop, executor, fn, args...) calls fn(args...) on one of the
// executor's threads and returns a Future completed on loop's thread with the
// value fn returns, or the exception it throws. Call it on the loop's thread.
// fn and args are copied or moved in (std::ref to share) and handed to fn as
// rvalues, as std::thread does. Cancelling the future (or the task awaiting
// it) does not stop fn, as in asyncio: its outcome is dropped when it comes.
// A future cancelled before a worker took fn keeps fn from running at all,
// as in asyncio. Throws RuntimeError if the loop is closed or the executor
// shut down.
// clang-format off
template <class Fn, class... Args>
  requires std::is_invocable_v<std::decay_t<Fn>&&, std::decay_t<Args>&&...>
Future<detail::ExecutorResult<Fn, Args...>> run_in_executor(EventLoop& loop,
                                                            ThreadPoolExecutor& executor,
                                                            Fn&& fn, Args&&... args) {
  // clang-format on
  using R = detail::ExecutorResult<Fn, Args...>;
  static_assert(!std::is_reference_v<R>, "run_in_executor(): fn must return a value");
  auto future = loop.create_future<R>();
  auto call = [fn = std::forward<Fn>(fn), ... args = std::forward<Args>(args)]() mutable -> R {
    return std::invoke(std::move(fn), std::move(args)...);
  };
  auto skip = std::make_shared<std::atomic<bool>>(false);
  future.add_done_callback([skip](const Future<R>& f) {
    if (f.cancelled()) skip->store(true, std::memory_order_relaxed);
  });
  try {
    executor.submit(std::make_unique<detail::FunctionJob<R, decltype(call)>>(
        std::move(call), Completer<R>(future), std::move(skip)));
  } catch (...) {
    // Nobody will see this future: cancelled, the refused job's report is dropped.
    future.cancel();
    throw;
  }
  return future;
}

// run_in_executor(loop, fn, args...) is the same on the loop's default executor.
// clang-format off
template <class Fn, class... Args>
  requires std::is_invocable_v<std::decay_t<Fn>&&, std::decay_t<Args>&&...>
Future<detail::ExecutorResult<Fn, Args...>> run_in_executor(EventLoop& loop, Fn&& fn,
                                                            Args&&... args) {
  // clang-format on
  return run_in_executor(loop, default_executor(loop), std::forward<Fn>(fn),
                         std::forward<Args>(args)...);
}

template <class Fn, class... Args>
auto EventLoop::run_in_executor(Fn&& fn, Args&&... args) {
  return fiberloop::run_in_executor(*this, std::forward<Fn>(fn), std::forward<Args>(args)...);
}

// to_thread(fn, args...), inside a task, runs fn(args...) on the running
// loop's default executor and waits for it: it returns what fn returns, or
// rethrows what fn threw. If the task is cancelled meanwhile, to_thread
// throws CancelledError at once while fn runs on to its end (its result is
// dropped). Throws RuntimeError outside a task.
template <class Fn, class... Args>
auto to_thread(Fn&& fn, Args&&... args) {
  detail::require_task("to_thread()");
  return detail::await_as(
      run_in_executor(get_running_loop(), std::forward<Fn>(fn), std::forward<Args>(args)...),
      "to_thread()", std::source_location::current());
}

}  // namespace fiberloop
