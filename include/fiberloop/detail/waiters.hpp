// waiters.hpp: the FIFO of futures that the synchronisation primitives park
// their waiting tasks on, and the watches that tell a waiter its primitive
// was destroyed.
#pragma once

#include <source_location>
#include <algorithm>
#include <cstddef>
#include <deque>
#include <exception>

#include "fiberloop/await.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/future.hpp"

namespace fiberloop::detail {

class WatchList;

// Watch is a waiting call's note, on the call's own stack, that the primitive
// it waits on still exists: the primitive's WatchList marks it gone when the
// primitive is destroyed. It stays linked from before the wait until the
// waiter runs again, since a primitive may also die between waking a waiter
// and the waiter running; once gone() the call must not touch the primitive.
class Watch {
 public:
  explicit Watch(WatchList& list) noexcept;
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  ~Watch();

  bool gone() const noexcept { return list_ == nullptr; }

 private:
  friend class WatchList;
  WatchList* list_;
  Watch* prev_ = nullptr;
  Watch* next_;
};

// WatchList is the intrusive list of the Watches on one primitive, so that
// telling them it is gone allocates nothing.
class WatchList {
 public:
  WatchList() = default;
  WatchList(const WatchList&) = delete;
  WatchList& operator=(const WatchList&) = delete;
  // Nothing unlinks a gone watch afterwards: the list no longer exists.
  ~WatchList() {
    for (Watch* w = head_; w; w = w->next_) w->list_ = nullptr;
  }

 private:
  friend class Watch;
  Watch* head_ = nullptr;
};

inline Watch::Watch(WatchList& list) noexcept : list_(&list), next_(list.head_) {
  if (next_) next_->prev_ = this;
  list.head_ = this;
}

inline Watch::~Watch() {
  if (gone()) return;
  if (prev_) {
    prev_->next_ = next_;
  } else {
    list_->head_ = next_;
  }
  if (next_) next_->prev_ = prev_;
}

// Waiters is asyncio's `collections.deque` of waiter futures: FIFO, with
// removal from the middle when a waiter gives up. It only allocates once a
// task actually has to wait. Destroyed while tasks wait (the primitive went
// away under them), it wakes them all, and their watches tell them why.
class Waiters {
 public:
  using iterator = std::deque<Future<void>>::iterator;
  using const_iterator = std::deque<Future<void>>::const_iterator;

  Waiters() = default;
  Waiters(const Waiters&) = delete;
  Waiters& operator=(const Waiters&) = delete;
  ~Waiters() { wake_pending(); }

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

  // watches() is where a call that waits on the primitive keeps its Watch.
  WatchList& watches() noexcept { return watches_; }

 private:
  // wake_pending() wakes the waiters one iteration late, on purpose: a
  // primitive in the main function's frame dies as main returns, and the
  // loop stops an iteration later; fiberloop::run() must then find its
  // waiters still parked and cancel them, as asyncio.run() would, rather than
  // have them fail with nobody to tell.
  void wake_pending() noexcept {
    for (Future<void>& fut : queue_) {
      if (fut.done()) continue;
      try {
        fut.get_loop().call_soon([fut] {
          if (!fut.done()) fut.set_result();
        });
      } catch (...) {
        // Only a closed loop refuses: it unwound its tasks already, so no
        // waiter is left to wake.
      }
    }
  }

  std::deque<Future<void>> queue_;
  WatchList watches_;
};

// leave_destroyed(error, primitive, call) ends a call whose primitive was
// destroyed while it waited, given the error its wait ended with: the task's
// own cancellation stays a CancelledError, anything else becomes
// WaitedOnDestroyed.
[[noreturn, gnu::cold]] inline void leave_destroyed(const std::exception_ptr& error,
                                                    const char* primitive, const char* call) {
  if (is_cancellation(error)) std::rethrow_exception(error);
  throw WaitedOnDestroyed(primitive, call);
}

// wait_on(waiters, fut, primitive, call) awaits a waiter future and returns
// the exception the wait ended with (null when woken), so that the caller
// cleans up — possibly waiting again — outside any catch block: a fiber must
// not switch away from inside a handler. A fiber unwound while parked leaves
// the queue at once. If the primitive was destroyed meanwhile it throws
// instead, as leave_destroyed() (primitive and call name it in the message),
// and the caller must let that pass without touching the primitive.
//
// what and where name the wait in the task dump ("Lock.acquire()", the user's line).
inline std::exception_ptr wait_on(Waiters& waiters, const Future<void>& fut, const char* primitive,
                                  const char* call, const char* what, std::source_location where) {
  Watch watch(waiters.watches());
  std::exception_ptr error;
  try {
    await_as(fut, what, where);
  } catch (const FiberUnwind&) {
    if (!watch.gone()) waiters.remove(fut);
    throw;
  } catch (...) {
    error = std::current_exception();
  }
  if (watch.gone()) [[unlikely]]
    leave_destroyed(error, primitive, call);
  return error;
}

}  // namespace fiberloop::detail
