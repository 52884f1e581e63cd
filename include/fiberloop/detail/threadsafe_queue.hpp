// detail/threadsafe_queue.hpp: the loop's inbox for call_soon_threadsafe().
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

#include "fiberloop/detail/inline_function.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// ThreadsafeQueue holds the callbacks other threads post to a loop, and the
// eventfd that wakes the loop's poll when one arrives.
//
// Invariant: the eventfd is written and closed only under mutex_, and closed
// only after closed_ is set under it. A post either wrote before the loop
// closed its fd or sees closed_ and throws: no write can land in a file that
// reused the fd number after the loop went away.
class FIBERLOOP_API ThreadsafeQueue {
 public:
  using Callback = InlineFunction<void(), 48>;

  // ThreadsafeQueue() opens the eventfd. Throws std::system_error.
  ThreadsafeQueue();
  // ~ThreadsafeQueue() closes it (and the queue, if close() was not called).
  ~ThreadsafeQueue();
  ThreadsafeQueue(const ThreadsafeQueue&) = delete;
  ThreadsafeQueue& operator=(const ThreadsafeQueue&) = delete;

  // fd() is the eventfd to poll for readability.
  int fd() const noexcept { return fd_; }

  // post(fn), from any thread, queues fn and wakes the loop: the first post
  // after a take writes the eventfd, the rest of the burst does not. Throws
  // RuntimeError("Event loop is closed") after close().
  void post(Callback fn);

  // pending() is true when posts wait to be taken (a cheap acquire load).
  bool pending() const noexcept { return pending_.load(std::memory_order_acquire); }

  // take(batch) moves every queued callback into the empty `batch`, in post
  // order. Swapping keeps both buffers' capacity: no allocation in steady state.
  void take(std::vector<Callback>& batch);

  // clear_wakeup() resets the eventfd counter after poll reported it readable.
  void clear_wakeup() noexcept;

  // close() refuses further posts and drops the queued ones. Idempotent.
  void close() noexcept;

 private:
  std::mutex mutex_;
  std::vector<Callback> queue_;  // guarded by mutex_
  bool closed_ = false;          // guarded by mutex_
  int fd_;                       // written and closed under mutex_
  // pending_ lets the loop's call_soon() drain posts first, so a post that
  // happened before a call_soon() also runs before it (one FIFO, as asyncio).
  std::atomic<bool> pending_{false};
};

}  // namespace fiberloop::detail
