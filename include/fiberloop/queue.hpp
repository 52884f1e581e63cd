// queue.hpp: Queue, PriorityQueue and LifoQueue, as asyncio's queues.
#pragma once

#include <source_location>
#include <algorithm>
#include <cstddef>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "fiberloop/detail/waiters.hpp"
#include "fiberloop/event.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop {
namespace detail {

// QueueCore is what every queue shares whatever its order: the getters and
// putters waiting, task_done/join accounting, and shutdown. The derived
// queue says how many items it holds and drops one on an immediate shutdown.
class FIBERLOOP_API QueueCore {
 public:
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;

  // qsize() is the number of items queued.
  virtual std::size_t qsize() const noexcept = 0;
  bool empty() const noexcept { return qsize() == 0; }
  // full() is true when maxsize > 0 items fill the queue; never for maxsize 0.
  bool full() const noexcept { return maxsize_ > 0 && qsize() >= maxsize_; }
  std::size_t maxsize() const noexcept { return maxsize_; }
  bool is_shutdown() const noexcept { return shutdown_; }

  // task_done() marks one item taken by get() as processed. Throws
  // std::invalid_argument if called more times than items were put.
  void task_done();
  // join() waits until every item put was marked by task_done().
  void join();
  // shutdown(immediate) makes put() throw QueueShutDown at once, and get()
  // once the queue is empty; immediate also drops the items still queued
  // (counting them as done for join()). Every waiting put() and get() wakes up
  // to re-check.
  void shutdown(bool immediate = false);

 protected:
  // name is the queue class's, for the error of a waiter whose queue is destroyed.
  QueueCore(std::size_t maxsize, const char* name) : maxsize_(maxsize), name_(name) {
    finished_.set();
  }
  ~QueueCore() = default;

  virtual void drop_one() noexcept = 0;

  // wait_for_room() is put()'s wait while the queue is full.
  void wait_for_room(std::source_location where);
  // wait_for_item() is get()'s wait while the queue is empty.
  void wait_for_item(std::source_location where);
  void check_put();
  void check_get();
  void after_put();
  void after_get();

 private:
  static void wake_up_next(Waiters& waiters);

  std::size_t maxsize_;
  const char* name_;
  std::size_t unfinished_tasks_ = 0;
  bool shutdown_ = false;
  Event finished_;
  Waiters getters_;
  Waiters putters_;
};

// FifoStore keeps the items in a ring that only grows: a queue in steady use
// does not allocate.
template <class T>
class FifoStore {
 public:
  static constexpr const char* queue_name = "Queue";  // the queue over this store
  std::size_t size() const noexcept { return size_; }
  void push(T item) {
    if (size_ == slots_.size()) grow();
    slots_[(head_ + size_) % slots_.size()].emplace(std::move(item));
    ++size_;
  }
  T pop() {
    std::optional<T>& slot = slots_[head_];
    T item = std::move(*slot);
    slot.reset();
    head_ = (head_ + 1) % slots_.size();
    --size_;
    return item;
  }

 private:
  void grow() {
    std::vector<std::optional<T>> slots(slots_.empty() ? 16 : slots_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) {
      slots[i] = std::move(slots_[(head_ + i) % slots_.size()]);
    }
    slots_ = std::move(slots);
    head_ = 0;
  }
  std::vector<std::optional<T>> slots_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

// LifoStore: the last item put is the first out.
template <class T>
class LifoStore {
 public:
  static constexpr const char* queue_name = "LifoQueue";
  std::size_t size() const noexcept { return items_.size(); }
  void push(T item) { items_.push_back(std::move(item)); }
  T pop() {
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }

 private:
  std::vector<T> items_;
};

// HeapStore: the smallest item by Compare is the first out (asyncio's heapq).
template <class T, class Compare>
class HeapStore {
 public:
  static constexpr const char* queue_name = "PriorityQueue";
  std::size_t size() const noexcept { return items_.size(); }
  void push(T item) {
    items_.push_back(std::move(item));
    std::push_heap(items_.begin(), items_.end(), greater());
  }
  T pop() {
    std::pop_heap(items_.begin(), items_.end(), greater());
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }

 private:
  auto greater() const {
    return [this](const T& a, const T& b) { return less_(b, a); };
  }
  std::vector<T> items_;
  [[no_unique_address]] Compare less_;
};

// BasicQueue is a queue over one of the stores above.
template <class T, class Store>
class BasicQueue : public QueueCore {
 public:
  // BasicQueue(maxsize): 0 (the default) means unbounded.
  explicit BasicQueue(std::size_t maxsize = 0) : QueueCore(maxsize, Store::queue_name) {}
  ~BasicQueue() = default;

  std::size_t qsize() const noexcept final { return store_.size(); }

  // put(item) waits while the queue is full, then queues item. Throws
  // QueueShutDown once the queue is shut down, CancelledError if cancelled
  // while waiting (item is then not queued).
  void put(T item, std::source_location where = std::source_location::current()) {
    wait_for_room(where);
    put_nowait(std::move(item));
  }
  // put_nowait(item) queues item without waiting. Throws QueueFull if the
  // queue is full, QueueShutDown once it is shut down.
  void put_nowait(T item) {
    check_put();
    store_.push(std::move(item));
    after_put();
  }
  // get() waits while the queue is empty, then takes the next item. Throws
  // QueueShutDown if the queue is shut down and empty (at once after an
  // immediate shutdown), CancelledError if cancelled while waiting.
  T get(std::source_location where = std::source_location::current()) {
    wait_for_item(where);
    return get_nowait();
  }
  // get_nowait() takes the next item without waiting. Throws QueueEmpty if
  // there is none, QueueShutDown if shut down and empty.
  T get_nowait() {
    check_get();
    T item = store_.pop();
    after_get();
    return item;
  }

 private:
  void drop_one() noexcept final { (void)store_.pop(); }

  Store store_;
};

}  // namespace detail

// Queue<T> is asyncio.Queue: first in, first out, bounded by maxsize (0:
// unbounded). Move-only T works. Not copyable, not movable. A task waiting in
// put(), get() or join() when the queue is destroyed gets RuntimeError
// ("Queue destroyed while a task was waiting in get()"; likewise LifoQueue,
// PriorityQueue).
//
// Example:
//   fiberloop::Queue<std::string> q(10);
//   ...producer task:  q.put("job");      // waits while 10 are queued
//   ...consumer task:  auto job = q.get(); work(job); q.task_done();
//   ...then:           q.join();          // every job processed
template <class T>
class Queue : public detail::BasicQueue<T, detail::FifoStore<T>> {
 public:
  using detail::BasicQueue<T, detail::FifoStore<T>>::BasicQueue;
};

// LifoQueue<T> is asyncio.LifoQueue: the last item put comes out first.
template <class T>
class LifoQueue : public detail::BasicQueue<T, detail::LifoStore<T>> {
 public:
  using detail::BasicQueue<T, detail::LifoStore<T>>::BasicQueue;
};

// PriorityQueue<T, Compare> is asyncio.PriorityQueue: the smallest item
// (by Compare, default operator<) comes out first; use a pair (priority, data)
// as asyncio's tuples.
template <class T, class Compare = std::less<T>>
class PriorityQueue : public detail::BasicQueue<T, detail::HeapStore<T, Compare>> {
 public:
  using detail::BasicQueue<T, detail::HeapStore<T, Compare>>::BasicQueue;
};

}  // namespace fiberloop
