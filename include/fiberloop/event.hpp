// event.hpp: Event, asyncio.Event — a flag tasks can wait for.
#pragma once

#include <source_location>

#include "fiberloop/detail/waiters.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop {

// Event is a flag, initially false: wait() parks the calling task until
// set() makes it true; clear() makes it false again.
//
// Example:
//   fiberloop::Event ready;
//   fiberloop::spawn([&] { ready.wait(); std::puts("go"); });
//   ready.set();
//
// Owner: not copyable, not movable.
class FIBERLOOP_API Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // wait() returns at once if the flag is set, else waits for set(). Throws
  // CancelledError if the task is cancelled while it waits, RuntimeError
  // outside a task (when it has to wait) or if the event is destroyed while
  // the task waits.
  void wait(std::source_location where = std::source_location::current());
  // set() sets the flag and wakes every waiter.
  void set();
  // clear() resets the flag; tasks woken already still return from wait().
  void clear() noexcept { value_ = false; }
  bool is_set() const noexcept { return value_; }

 private:
  bool value_ = false;
  detail::Waiters waiters_;
};

}  // namespace fiberloop
