// fiber_tls.hpp (private): the thread's fiber bookkeeping, read directly by
// the task's switch path (in the library: one load each, no call; constinit
// spares each access the check for a dynamic initializer).
#pragma once

#include "fiberloop/detail/fiber.hpp"

namespace fiberloop::detail {

// FiberThread is the thread's fiber bookkeeping, one block so that a switch
// finds all of it from one address.
struct FiberThread {
  // current is the fiber running on this thread (nullptr: a thread stack).
  Fiber* current = nullptr;
  // unwinding counts this thread's fibers between the start and the end of
  // a forced unwind: every wait checks for it, and it is almost always 0.
  int unwinding = 0;
  // exceptions caches the address of the C++ runtime's exception record for
  // this thread (thread_exception_state() fills it).
  Fiber::ExceptionState* exceptions = nullptr;
};
extern constinit thread_local FiberThread fiber_thread;

}  // namespace fiberloop::detail
