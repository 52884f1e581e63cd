// waiters.hpp: the FIFO of futures that the synchronisation primitives park
// their waiting tasks on.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <exception>

#include "fiberloop/await.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/future.hpp"

namespace fiberloop::detail {

// Waiters is asyncio's `collections.deque` of waiter futures: FIFO, with
// removal from the middle when a waiter gives up. It only allocates once a
// task actually has to wait.
class Waiters {
 public:
  using iterator = std::deque<Future<void>>::iterator;
  using const_iterator = std::deque<Future<void>>::const_iterator;

  // add() parks a new pending future at the back and returns it.
  Future<void> add() {
    Future<void> fut = get_running_loop().create_future<void>();
    queue_.push_back(fut);
    return fut;
  }
  // remove(fut) takes fut out if it is still there (a wake-up may have
  // popped it already); returns whether it was.
  bool remove(const Future<void>& fut) noexcept {
    auto it = std::find(queue_.begin(), queue_.end(), fut);
    if (it == queue_.end()) return false;
    queue_.erase(it);
    return true;
  }
  bool empty() const noexcept { return queue_.empty(); }
  std::size_t size() const noexcept { return queue_.size(); }
  Future<void>& front() noexcept { return queue_.front(); }
  Future<void> pop_front() {
    Future<void> f = std::move(queue_.front());
    queue_.pop_front();
    return f;
  }
  iterator begin() noexcept { return queue_.begin(); }
  iterator end() noexcept { return queue_.end(); }
  const_iterator begin() const noexcept { return queue_.begin(); }
  const_iterator end() const noexcept { return queue_.end(); }

 private:
  std::deque<Future<void>> queue_;
};

// wait_on(waiters, fut) awaits a waiter future and returns the exception the
// wait ended with (null when woken), so that the caller cleans up — possibly
// waiting again — outside any catch block: a fiber must not switch away from
// inside a handler. A fiber unwound while parked leaves the queue at once.
inline std::exception_ptr wait_on(Waiters& waiters, const Future<void>& fut) {
  try {
    await(fut);
    return nullptr;
  } catch (const FiberUnwind&) {
    waiters.remove(fut);
    throw;
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace fiberloop::detail
