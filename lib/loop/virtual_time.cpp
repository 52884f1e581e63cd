// virtual_time.cpp: the loop's virtual clock, which jumps when nothing else can happen.
#include <algorithm>

#include "fiberloop/event_loop.hpp"

namespace fiberloop {

void EventLoop::set_virtual_time(bool enabled) {
  core_.check_closed();
  if (core_.running() || core_.iteration() != 0)
    throw RuntimeError("set_virtual_time() must be called before the loop first runs");
  if (!timers_.empty())
    throw RuntimeError(
        "set_virtual_time() must be called before any timer is scheduled: their deadlines "
        "were read off the other clock");
  core_.set_virtual_time(enabled);
}

// durably_blocked() says whether nothing but a timer can give the loop work:
// only then may the clock jump, as Go's synctest advances a bubble's clock
// once every goroutine in it is durably blocked. Anything that can arrive
// from outside (an fd awaited, a thread's post or job, a child's exit)
// keeps the clock real, so that a jump never overtakes it.
bool EventLoop::durably_blocked() {
  if (!core_.ready().empty() || stopping_ || core_.posts_pending()) return false;
  std::size_t quiet = 0;
  for (auto& extension : extensions_) {
    if (!extension) continue;
    if (extension->holds_time()) return false;
    quiet += extension->quiet_fds();
  }
  return io_.awaited() <= quiet;
}

// poll_virtual() is the poll phase on the virtual clock. Durably blocked,
// the clock jumps to the earliest deadline and the poll only looks. Else
// the poll waits for real, at most until that deadline (the virtual wait
// mapped 1:1 onto real time), and the clock moves by what it waited, never
// past the deadline: the time spent running callbacks never counts, so
// timers still fire one deadline at a time, in order.
void EventLoop::poll_virtual() {
  if (!timers_.empty() && durably_blocked()) {
    core_.advance_virtual(timers_.next_deadline_ns());
    io_.poll(0);
    return;
  }
  // Posts already pending are work already here: the poll only looks, and
  // the clock stays where it is, whatever the eventfd's wake-up costs.
  std::int64_t timeout = core_.posts_pending() ? 0 : poll_timeout_ns();
  if (timeout <= 0) {
    io_.poll(timeout);
    return;
  }
  std::int64_t start = detail::LoopCore::real_now_ns();
  io_.poll(timeout);
  std::int64_t waited = detail::LoopCore::real_now_ns() - start;
  core_.advance_virtual(core_.now_ns() + std::min(waited, timeout));
}

}  // namespace fiberloop
