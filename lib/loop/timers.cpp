#include "fiberloop/detail/timers.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace fiberloop::detail {
namespace {

constexpr std::int64_t kMaxPollNs = 86'400'000'000'000;  // a day: asyncio's MAXIMUM_SELECT_TIMEOUT
constexpr std::int64_t kFarFuture = std::numeric_limits<std::int64_t>::max() / 2;

// seconds_to_ns_ceil(s) rounds up, so that a timer never fires early; it
// truncates and corrects rather than calling ceil() (a libm call on x86-64).
std::int64_t seconds_to_ns_ceil(double s) {
  double ns = s * 1e9;
  if (!(ns < static_cast<double>(kFarFuture))) [[unlikely]] {
    if (std::isnan(ns)) throw std::invalid_argument("timer delay or deadline is NaN");
    return kFarFuture;
  }
  if (ns <= -static_cast<double>(kFarFuture)) [[unlikely]]
    return -kFarFuture;
  auto whole = static_cast<std::int64_t>(ns);  // toward zero: the ceiling when negative
  return whole + (static_cast<double>(whole) < ns ? 1 : 0);
}

}  // namespace

std::int64_t Timers::deadline_after(double delay) const {
  std::int64_t d = seconds_to_ns_ceil(delay);
  std::int64_t now = core_.now_ns();  // read at the call, as asyncio's call_later does
  return d > kFarFuture - now ? kFarFuture : now + d;
}

std::int64_t Timers::deadline_at(double when) { return seconds_to_ns_ceil(when); }

void Timers::schedule_after(HandleState* h, double delay) { schedule(h, deadline_after(delay)); }

void Timers::schedule(HandleState* h, std::int64_t when_ns) {
  core_.check_scheduling();
  FIBERLOOP_ASSERT(!h->in_heap && h->kind == HandleState::Kind::once,
                   "a timer is a one-shot handle, in the heap at most once");
  h->when_ns = when_ns;
  h->seq = seq_++;
  h->in_heap = true;
  h->add_ref();  // the heap's
  queue_.push(h);
}

void Timers::drop_cancelled_slow() {
  std::size_t& cancelled = core_.cancelled_timers();
  if (queue_.size() > kMinScheduled && cancelled * 2 > queue_.size()) {
    queue_.remove_if([](HandleState* h) { return h->cancelled; },
                     [](HandleState* h) {
                       h->in_heap = false;
                       Ref<HandleState>::adopt(h);
                     });
    cancelled = 0;
    return;
  }
  while (!queue_.empty() && queue_.front()->cancelled) {
    HandleState* h = queue_.pop();
    h->in_heap = false;
    --cancelled;
    Ref<HandleState>::adopt(h);
  }
}

std::int64_t Timers::timeout_ns() const {
  if (queue_.empty()) return -1;
  std::int64_t wait = queue_.front()->when_ns - core_.now_ns();
  return std::clamp<std::int64_t>(wait, 0, kMaxPollNs);
}

void Timers::queue_due_slow() {
  std::int64_t now = core_.iteration_ns();  // read once, right after the poll
  while (!queue_.empty() && queue_.front()->when_ns <= now) {
    HandleState* h = queue_.pop();
    h->in_heap = false;
    if (h->cancelled) {
      --core_.cancelled_timers();
      Ref<HandleState>::adopt(h);
    } else {
      core_.push_ready_adopted(h);  // the heap's reference moves to the queue
    }
  }
}

void Timers::clear() noexcept {
  while (!queue_.empty()) {
    HandleState* h = queue_.pop();
    h->in_heap = false;
    h->cancel();
    Ref<HandleState>::adopt(h);
  }
  core_.cancelled_timers() = 0;
}

}  // namespace fiberloop::detail
