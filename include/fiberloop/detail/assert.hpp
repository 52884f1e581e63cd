// detail/assert.hpp: FIBERLOOP_ASSERT, the check of an ownership protocol.
#pragma once

#include "fiberloop/export.hpp"

// FIBERLOOP_ASSERT(cond, msg) aborts with msg, the condition and where, when
// cond is false. It states the protocols the code relies on (who holds a
// reference, which state may follow which) where they are relied on, so
// that a broken one stops at its cause rather than corrupting memory later.
// On in debug and sanitizer builds (and with -DFIBERLOOP_ASSERTIONS=1); a
// release build compiles it away, so the hot paths pay nothing.
#if !defined(FIBERLOOP_ASSERTIONS)
#if !defined(NDEBUG) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FIBERLOOP_ASSERTIONS 1
#else
#define FIBERLOOP_ASSERTIONS 0
#endif
#endif

namespace fiberloop::detail {
[[noreturn]] FIBERLOOP_API void assert_failed(const char* condition, const char* message,
                                              const char* file, int line) noexcept;
}  // namespace fiberloop::detail

#if FIBERLOOP_ASSERTIONS
#define FIBERLOOP_ASSERT(cond, msg)                                                  \
  (static_cast<bool>(cond) ? static_cast<void>(0)                                    \
                           : ::fiberloop::detail::assert_failed(#cond, msg, __FILE__, __LINE__))
#else
#define FIBERLOOP_ASSERT(cond, msg) static_cast<void>(0)
#endif
