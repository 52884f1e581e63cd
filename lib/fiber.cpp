#include "fiberloop/detail/fiber.hpp"

#include <cstdio>
#include <cstdlib>

#include "fiber_tls.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define FIBERLOOP_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define FIBERLOOP_TSAN 1
#endif

namespace fiberloop::detail {

constinit thread_local Fiber* current_fiber = nullptr;
constinit thread_local int unwinding_fibers = 0;

namespace {

#ifdef FIBERLOOP_TSAN
// TSan wants each switch announced immediately before the jump, and a
// function entered before the announcement left after it on the other side
// corrupts its per-fiber shadow stacks. So every jump below is a bare
// `X.resume()` right after tsan_switch(), on both sides; and a finished fiber
// does not return through Boost's exit frames (they run after the last
// point we control): it parks, and its resumer unwinds it like a suspended
// one, with the announcement in the same frame as the jump.
constexpr bool kParkOnExit = true;
#else
constexpr bool kParkOnExit = false;
#endif

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

[[noreturn]] void die(const char* why) {
  std::fprintf(stderr, "fiberloop: %s\n", why);
  std::abort();
}

// take_unwind() keeps Boost's unwind context and marks its exception caught
// (Boost asserts that in builds without NDEBUG); FiberUnwind goes on instead.
boost::context::detail::fcontext_t take_unwind(boost::context::detail::forced_unwind& e) {
#ifndef BOOST_ASSERT_IS_VOID
  e.caught = true;
#endif
  return std::exchange(e.fctx, nullptr);
}

}  // namespace

Fiber* Fiber::current() noexcept { return current_fiber; }

bool Fiber::current_chain_unwinding() noexcept {
  if (unwinding_fibers == 0) return false;
  for (Fiber* f = current_fiber; f; f = f->resumer_) {
    if (f->unwinding_) return true;
  }
  return false;
}

Fiber::CreateScope::CreateScope(Fiber& fiber) noexcept : fiber_(fiber) {
#ifdef FIBERLOOP_TSAN
  fiber.tsan_fiber_ = __tsan_create_fiber(0);
  fiber.tsan_resumer_ = __tsan_get_current_fiber();
#endif
  asan_start(&fake_stack_, static_cast<char*>(fiber.stack_.sp) - fiber.stack_.size,
             fiber.stack_.size);
  tsan_switch(fiber.tsan_fiber_);
}

Fiber::CreateScope::~CreateScope() {
  tsan_switch(fiber_.tsan_resumer_);
  asan_finish(fake_stack_, nullptr, nullptr);
  if (!fiber_.self_) {  // the constructor threw: Boost never took the stack
    StackPool::local().deallocate(fiber_.stack_);
    fiber_.state_ = State::finished;
#ifdef FIBERLOOP_TSAN
    __tsan_destroy_fiber(std::exchange(fiber_.tsan_fiber_, nullptr));
#endif
  }
}

Fiber::~Fiber() {
  if (state_ == State::running) die("a fiber was destroyed while running on its own stack");
  if (state_ == State::forwarding) die("a fiber was destroyed while its resumer waits for it");
  unwind();
}

// switch_in() is the caller's half of resume() and unwind(): it resumes
// self_, or destroys it (which makes Boost unwind the fiber).
void Fiber::switch_in(bool destroy) {
  resumer_ = current_fiber;
  current_fiber = this;
  state_ = State::running;
  void* fake = nullptr;
#ifdef FIBERLOOP_TSAN
  tsan_resumer_ = __tsan_get_current_fiber();
#endif
  asan_start(&fake, static_cast<char*>(stack_.sp) - stack_.size, stack_.size);
  tsan_switch(tsan_fiber_);
  if (destroy) {
    { boost::context::fiber doomed = std::move(self_); }  // unwinds it, frees the stack
  } else {
    self_ = std::move(self_).resume();
  }
  tsan_switch(tsan_resumer_);
  asan_finish(fake, nullptr, nullptr);
  current_fiber = resumer_;
  if (kParkOnExit && parked_ && self_) {  // finished: unwind it from here
    parked_ = false;
    switch_in(true);
    return;
  }
  state_ = self_ ? State::suspended : State::finished;
#ifdef FIBERLOOP_TSAN
  if (!self_) __tsan_destroy_fiber(std::exchange(tsan_fiber_, nullptr));
#endif
}

void Fiber::resume() {
  if (state_ != State::created && state_ != State::suspended)
    die("resume() of a fiber that is not suspended");
  switch_in(false);
  while (state_ == State::suspended && forward_fn_) {
    ForwardFn fn = std::exchange(forward_fn_, nullptr);
    state_ = State::forwarding;  // nobody else may resume it meanwhile
    try {
      fn(forward_arg_);
    } catch (const FiberUnwind&) {
      state_ = State::suspended;  // our owner unwinds it when it goes
      throw;
    } catch (...) {
      forward_error_ = std::current_exception();
    }
    state_ = State::suspended;
    switch_in(false);
  }
}

void Fiber::forward(ForwardFn fn, void* arg) {
  if (current_fiber != this) die("forward() called outside the fiber");
  forward_fn_ = fn;
  forward_arg_ = arg;
  suspend();
  if (forward_error_) std::rethrow_exception(std::exchange(forward_error_, nullptr));
}

void Fiber::unwind() {
  if (state_ == State::created) {
    skip_entry_ = true;
    resume();
  } else if (state_ == State::suspended) {
    switch_in(true);
  }
}

void Fiber::suspend() {
  if (current_fiber != this) die("suspend() called outside the fiber");
  if (unwinding_) {
    die("a fiber tried to suspend (wait or yield) while it was being unwound: "
        "a catch (...) swallowed FiberUnwind, or a destructor waits during the unwinding");
  }
  current_fiber = resumer_;
  asan_start(&fake_stack_, caller_bottom_, caller_size_);
  tsan_switch(tsan_resumer_);
  try {
    caller_ = std::move(caller_).resume();
  } catch (boost::context::detail::forced_unwind& e) {
    asan_finish(fake_stack_, &caller_bottom_, &caller_size_);
    unwinding_ = true;
    ++unwinding_fibers;
    unwind_fctx_ = take_unwind(e);
    throw FiberUnwind();
  }
  asan_finish(fake_stack_, &caller_bottom_, &caller_size_);
}

void Fiber::enter(boost::context::fiber&& caller) noexcept {
  asan_finish(nullptr, &caller_bottom_, &caller_size_);
  caller_ = std::move(caller);
}

boost::context::fiber Fiber::leave() {
  if (unwinding_) {
    die("a fiber body swallowed FiberUnwind: a catch (...) must rethrow it "
        "(catch (const fiberloop::FiberUnwind&) { throw; })");
  }
  if constexpr (kParkOnExit) {
    // Park until the resumer unwinds us (see kParkOnExit).
    parked_ = true;
    current_fiber = resumer_;
    tsan_switch(tsan_resumer_);
    try {
      caller_ = std::move(caller_).resume();
    } catch (boost::context::detail::forced_unwind& e) {
      unwind_fctx_ = take_unwind(e);
      throw FiberUnwind();
    }
    die("a finished fiber was resumed");
  }
  // This fiber dies: ASan may free its fake stack now.
  asan_start(nullptr, caller_bottom_, caller_size_);
  return std::move(caller_);
}

void Fiber::leave_unwinding() noexcept {
  if (unwinding_) --unwinding_fibers;
  asan_start(nullptr, caller_bottom_, caller_size_);
}

boost::context::detail::fcontext_t Fiber::take_unwind_context() noexcept {
  return std::exchange(unwind_fctx_, nullptr);
}

}  // namespace fiberloop::detail
