// fiber_switch.hpp (private): the sanitizer annotations of a switch, and the
// switch out of a fiber, inline in a task's wait (out of line behind
// suspend_unchecked() for everyone else: a Generator).
#pragma once

#include <cxxabi.h>

#include <cstring>
#include <utility>

#include "fiber_tls.hpp"
#include "fiberloop/detail/assert.hpp"
#include "fiberloop/detail/fiber.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define FIBERLOOP_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define FIBERLOOP_TSAN 1
#endif

namespace fiberloop::detail {

// TSan wants each switch announced immediately before the jump, and a
// function entered before the announcement left after it on the other side
// corrupts its per-fiber shadow stacks: so every jump below is a bare
// jump_fcontext right after tsan_switch(), on both sides.
inline void tsan_switch(void* to) {
#ifdef FIBERLOOP_TSAN
  __tsan_switch_to_fiber(to, 0);  // 0: the switch orders memory, as it does
#else
  (void)to;
#endif
}

// The ASan protocol: before each switch, name the stack we go to and park
// the fake stack of the one we leave (nullptr: the leaving fiber dies);
// right after it, restore ours and learn where we came from.
inline void asan_start(void** fake_save, const void* bottom, std::size_t size) {
#ifdef FIBERLOOP_ASAN
  __sanitizer_start_switch_fiber(fake_save, bottom, size);
#else
  (void)fake_save, (void)bottom, (void)size;
#endif
}

inline void asan_finish(void* fake, const void** bottom_old, std::size_t* size_old) {
#ifdef FIBERLOOP_ASAN
  __sanitizer_finish_switch_fiber(fake, bottom_old, size_old);
#else
  (void)fake, (void)bottom_old, (void)size_old;
#endif
}

#if defined(__ARM_EABI_UNWINDER__)
#error "fiberloop: the ARM EHABI's __cxa_eh_globals has a third field; Fiber::ExceptionState does not mirror it"
#endif
static_assert(sizeof(Fiber::ExceptionState) == 16, "one vector load and store per side of a swap");

// thread_exception_state() is the C++ runtime's per-thread exception record
// (__cxa_get_globals(): its address never changes for a thread), kept in our
// own thread-local so that a switch reads it with one load, not a call.
inline Fiber::ExceptionState* thread_exception_state() noexcept {
  Fiber::ExceptionState* state = fiber_thread.exceptions;
  if (!state) [[unlikely]] {
    state = reinterpret_cast<Fiber::ExceptionState*>(abi::__cxa_get_globals());
    fiber_thread.exceptions = state;
  }
  return state;
}

// swap_exception_state(a, b): 16 bytes each way, no branch: cheaper than a
// test for the usual case (both empty).
inline void swap_exception_state(Fiber::ExceptionState* a, Fiber::ExceptionState* b) noexcept {
  alignas(16) unsigned char held[16];
  std::memcpy(held, a, 16);
  std::memcpy(a, b, 16);
  std::memcpy(b, held, 16);
}

inline void Fiber::switch_out() {
  fiber_thread.current = resumer_;
  asan_start(&fake_stack_, caller_bottom_, caller_size_);
  tsan_switch(tsan_resumer_);
  caller_ = boost::context::detail::jump_fcontext(std::exchange(caller_, nullptr), nullptr).fctx;
  asan_finish(fake_stack_, &caller_bottom_, &caller_size_);
}

inline void Fiber::suspend_inline() {
  FIBERLOOP_ASSERT(state_ == State::running && fiber_thread.current == this,
                   "a fiber suspended from outside its own stack");
  switch_out();
  if (request_ != Request::none) [[unlikely]]
    serve_request();
}

}  // namespace fiberloop::detail
