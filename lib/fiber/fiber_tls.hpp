// fiber_tls.hpp (private): the thread's fiber bookkeeping, read directly by
// the task's switch path (in the library: one load each, no call; constinit
// spares each access the check for a dynamic initializer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fiberloop/detail/fiber.hpp"
#include "fiberloop/detail/pending_flush.hpp"

namespace fiberloop::detail {

// FiberThread is the thread's fiber bookkeeping, one block so that a switch
// finds all of it from one address.
struct FiberThread {
  // current is the fiber running on this thread (nullptr: a thread stack).
  Fiber* current = nullptr;
  // unwinding counts this thread's fibers between the start and the end of
  // a forced unwind: every wait checks for it, and it is almost always 0.
  // flushes_queued is beside it, so that a wait tests both with one load
  // (wait_is_plain()): nonzero while a PendingFlush is queued.
  std::uint32_t unwinding = 0;
  std::uint32_t flushes_queued = 0;
  // exceptions caches the address of the C++ runtime's exception record for
  // this thread (thread_exception_state() fills it).
  Fiber::ExceptionState* exceptions = nullptr;
  PendingFlush* flushes_head = nullptr;  // the queue of detail/pending_flush.hpp
  PendingFlush* flushes_tail = nullptr;
};
extern constinit thread_local FiberThread fiber_thread;

// wait_is_plain(): no fiber unwinds and no flush is queued: a wait needs no
// more than its own checks.
inline bool wait_is_plain() noexcept {
  std::uint64_t both;
  static_assert(offsetof(FiberThread, flushes_queued) ==
                offsetof(FiberThread, unwinding) + sizeof(std::uint32_t));
  std::memcpy(&both, &fiber_thread.unwinding, sizeof both);
  return both == 0;
}

}  // namespace fiberloop::detail
