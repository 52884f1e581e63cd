#include "../base/async_signals_blocked.hpp"
#include "fiberloop/executor.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <stdexcept>
#include <system_error>

namespace fiberloop {
namespace {

using detail::AsyncSignalsBlocked;

}  // namespace

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers) : max_workers_(max_workers) {
  if (max_workers == 0) throw std::invalid_argument("ThreadPoolExecutor: max_workers must be > 0");
}

ThreadPoolExecutor::~ThreadPoolExecutor() { shutdown(); }

std::size_t ThreadPoolExecutor::default_max_workers() noexcept {
  std::size_t cores = std::thread::hardware_concurrency();
  return std::min<std::size_t>(32, (cores ? cores : 1) + 4);
}

std::size_t ThreadPoolExecutor::thread_count() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

void ThreadPoolExecutor::submit(std::unique_ptr<detail::ExecutorJob> job) {
  std::unique_lock lock(mutex_);
  if (shutdown_) throw RuntimeError("cannot schedule new futures after shutdown");
  queue_.push_back(std::move(job));
  // Start a thread only when the idle ones cannot take every queued job.
  if (idle_ < queue_.size() && threads_.size() < max_workers_) {
    try {
      AsyncSignalsBlocked born_blocked;  // the worker never takes the process's signals
      threads_.emplace_back([this] { worker_main(); });
    } catch (...) {
      if (threads_.empty()) {  // nobody would ever run it
        queue_.pop_back();
        throw;
      }
    }
  }
  lock.unlock();
  wake_.notify_one();
}

void ThreadPoolExecutor::worker_main() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    wake_.wait(lock, [this] { return shutdown_ || !queue_.empty(); });
    --idle_;
    if (shutdown_) return;
    std::unique_ptr<detail::ExecutorJob> job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    job->run();
    job.reset();  // the job's completer and captures go before the lock is retaken
    lock.lock();
  }
}

void ThreadPoolExecutor::shutdown() noexcept {
  std::deque<std::unique_ptr<detail::ExecutorJob>> dropped;
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    shutdown_ = true;
    dropped.swap(queue_);
    threads.swap(threads_);
  }
  wake_.notify_all();
  dropped.clear();  // their futures fail (or, the loop closed, are let go)
  for (std::thread& t : threads) {
    if (t.get_id() == std::this_thread::get_id()) {
      t.detach();  // shut down by one of its own jobs: cannot join itself
    } else {
      t.join();
    }
  }
}

ThreadPoolExecutor& default_executor(EventLoop& loop) {
  return detail::ThreadBridge::of(loop)->default_executor();
}

}  // namespace fiberloop
