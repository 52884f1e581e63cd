#include "fiberloop/event.hpp"

namespace fiberloop {

void Event::wait(std::source_location where) {
  if (value_) return;
  detail::require_task("Event::wait()");
  Future<void> fut = waiters_.add();
  std::exception_ptr error = detail::wait_on(waiters_, fut, "Event", "wait()", "Event.wait()", where);
  waiters_.remove(fut);
  if (error) std::rethrow_exception(error);
}

void Event::set() {
  if (value_) return;
  value_ = true;
  for (auto& fut : waiters_) {
    if (!fut.done()) fut.set_result();
  }
}

}  // namespace fiberloop
