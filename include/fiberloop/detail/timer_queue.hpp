// detail/timer_queue.hpp: the loop's scheduled timers, earliest first.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fiberloop/detail/ring_queue.hpp"
#include "fiberloop/handle.hpp"

namespace fiberloop::detail {

// TimerQueue orders timer handles by (when_ns, seq): the earliest deadline
// first, equal deadlines in the order scheduled (seq grows with each timer).
//
// Invariant: `run_` is sorted (each timer in it comes after the one before),
// `heap_` is a min-heap, and the earliest timer is the smaller of their two
// fronts. A timer that comes after the last one of the run joins the run in
// O(1) — the common case, since most programs schedule the same delay over
// and over (call_later(0), a fixed timeout, sleep in a loop) — and only a
// timer due before it pays the heap's O(log n). The heap's entries carry
// their keys, so that sifting compares without touching the handles (a
// million random timers would otherwise miss the cache at each step).
//
// The queue holds one reference on each handle (taken and given back by the
// loop, which adds it before push() and adopts what pop() returns).
class TimerQueue {
 public:
  bool empty() const noexcept { return run_.empty() && heap_.empty(); }
  std::size_t size() const noexcept { return run_.size() + heap_.size(); }

  // push(h) queues h, whose when_ns and seq are set (seq above every seq queued).
  void push(HandleState* h) {
    if (run_.empty() || h->when_ns >= run_.back()->when_ns) [[likely]] {
      run_.push_back(h);
    } else {
      push_heap(h);
    }
  }

  // front() is the earliest timer; the queue must not be empty.
  HandleState* front() const noexcept { return from_heap() ? heap_.front().h : run_.front(); }

  // pop() removes and returns the earliest timer; the queue must not be empty.
  HandleState* pop() noexcept {
    if (!from_heap()) return run_.pop_front();
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    HandleState* h = heap_.back().h;
    heap_.pop_back();
    return h;
  }

  // remove_if(pred, removed) takes out every timer for which pred(h) holds
  // and passes it to removed(h); O(n).
  template <class Pred, class Removed>
  void remove_if(Pred pred, Removed removed) {
    for (std::size_t i = 0, n = run_.size(); i < n; ++i) {
      HandleState* h = run_.pop_front();
      if (pred(h)) {
        removed(h);
      } else {
        run_.push_back(h);  // capacity is there: no allocation, order kept
      }
    }
    auto keep =
        std::partition(heap_.begin(), heap_.end(), [&](const Entry& e) { return !pred(e.h); });
    for (auto it = keep; it != heap_.end(); ++it) removed(it->h);
    heap_.erase(keep, heap_.end());
    std::make_heap(heap_.begin(), heap_.end(), Later{});
  }

 private:
  struct Entry {
    std::int64_t when_ns;
    std::uint64_t seq;
    HandleState* h;
  };
  // Later is the heap's order: a later deadline, then a later seq, is greater.
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const noexcept {
      return a.when_ns != b.when_ns ? a.when_ns > b.when_ns : a.seq > b.seq;
    }
  };

  // push_heap(h), out of line, keeps the run's O(1) path free of its
  // register pressure.
  [[gnu::noinline]] void push_heap(HandleState* h) {
    heap_.push_back({h->when_ns, h->seq, h});
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }

  bool from_heap() const noexcept {
    if (heap_.empty()) return false;
    if (run_.empty()) return true;
    const HandleState* r = run_.front();
    const Entry& e = heap_.front();
    return r->when_ns != e.when_ns ? r->when_ns > e.when_ns : r->seq > e.seq;
  }

  RingQueue<HandleState*> run_;
  std::vector<Entry> heap_;
};

}  // namespace fiberloop::detail
