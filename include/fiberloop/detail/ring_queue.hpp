// detail/ring_queue.hpp: the FIFO behind the loop's ready queue.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

namespace fiberloop::detail {

// RingQueue is a growable circular buffer. Unlike std::deque it never frees
// and reallocates blocks as items flow through, so a steady-state loop makes
// no allocation for its ready queue. T must be cheap to move (pointers).
template <class T>
class RingQueue {
 public:
  RingQueue() = default;
  RingQueue(const RingQueue&) = delete;
  RingQueue& operator=(const RingQueue&) = delete;

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  void push_back(T v) {
    if (size_ == capacity_) [[unlikely]] {
      grow_and_push(std::move(v));  // a tail call: the common push needs no frame
      return;
    }
    slots_[(head_ + size_) & (capacity_ - 1)] = std::move(v);
    ++size_;
  }
  // front() and back(): the oldest and the newest item; not on an empty queue.
  const T& front() const noexcept { return slots_[head_]; }
  const T& back() const noexcept { return slots_[(head_ + size_ - 1) & (capacity_ - 1)]; }
  // at(i) is the i-th oldest item; i < size().
  const T& at(std::size_t i) const noexcept { return slots_[(head_ + i) & (capacity_ - 1)]; }
  T pop_front() noexcept {
    T v = std::move(slots_[head_]);
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
    return v;
  }

 private:
  [[gnu::noinline]] void grow_and_push(T v) {
    grow();
    slots_[size_] = std::move(v);  // grow() left the items at 0 .. size_ - 1
    ++size_;
  }
  void grow() {
    std::size_t capacity = capacity_ ? capacity_ * 2 : 64;
    auto slots = std::make_unique<T[]>(capacity);
    for (std::size_t i = 0; i < size_; ++i)
      slots[i] = std::move(slots_[(head_ + i) & (capacity_ - 1)]);
    slots_ = std::move(slots);
    capacity_ = capacity;
    head_ = 0;
  }

  std::unique_ptr<T[]> slots_;
  std::size_t capacity_ = 0;  // always a power of two
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace fiberloop::detail
