#include "fiberloop/detail/threadsafe_queue.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#include "fiberloop/detail/syscall_counts.hpp"
#include "fiberloop/errors.hpp"

namespace fiberloop::detail {

ThreadsafeQueue::ThreadsafeQueue() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

ThreadsafeQueue::~ThreadsafeQueue() {
  close();
  std::lock_guard lock(mutex_);
  ::close(fd_);
  fd_ = -1;
}

void ThreadsafeQueue::post(Callback fn) {
  std::lock_guard lock(mutex_);
  if (closed_) throw RuntimeError("Event loop is closed");
  bool first_since_take = queue_.empty();
  queue_.push_back(std::move(fn));
  pending_.store(true, std::memory_order_release);
  // One wakeup per batch: a post into a non-empty queue rides on the write
  // that made it non-empty. That write came after the take that last
  // emptied the queue, and the loop clears the eventfd only right before a
  // take, so the posts it covers are taken by that take or a later one:
  // none is left without a wakeup. Under the lock: the loop cannot have
  // closed the fd in between (see the invariant). EAGAIN means the counter
  // is non-zero: the loop wakes anyway.
  if (!first_since_take) return;
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);
  ++syscall_counts().wakeups;
}

void ThreadsafeQueue::take(std::vector<Callback>& batch) {
  std::lock_guard lock(mutex_);
  batch.swap(queue_);
  pending_.store(false, std::memory_order_relaxed);
}

void ThreadsafeQueue::clear_wakeup() noexcept {
  std::uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(fd_, &count, sizeof count);
}

void ThreadsafeQueue::close() noexcept {
  std::vector<Callback> dropped;  // destroyed outside the lock: a destructor may post
  std::lock_guard lock(mutex_);
  closed_ = true;
  dropped.swap(queue_);
  pending_.store(false, std::memory_order_relaxed);
}

}  // namespace fiberloop::detail
