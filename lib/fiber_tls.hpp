// fiber_tls.hpp (private): the thread's fiber bookkeeping, read directly by
// the task's switch path (in the library: one load each, no call; constinit
// spares each access the check for a dynamic initializer).
#pragma once

namespace fiberloop::detail {

class Fiber;

// current_fiber is the fiber running on this thread (nullptr: a thread stack).
extern constinit thread_local Fiber* current_fiber;
// unwinding_fibers counts this thread's fibers between the start and the end
// of a forced unwind: every wait checks for it, and it is almost always 0.
extern constinit thread_local int unwinding_fibers;

}  // namespace fiberloop::detail
