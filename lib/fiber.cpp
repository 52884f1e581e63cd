#include "fiberloop/detail/fiber.hpp"

#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define FIBERLOOP_ASAN 1
#endif

namespace fiberloop::detail {
namespace {

thread_local Fiber* current_fiber = nullptr;

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

}  // namespace

Fiber* Fiber::current() noexcept { return current_fiber; }

Fiber::CreateScope::CreateScope(Fiber& fiber) noexcept : fiber_(fiber) {
  asan_start(&fake_stack_, static_cast<char*>(fiber.stack_.sp) - fiber.stack_.size,
             fiber.stack_.size);
}

Fiber::CreateScope::~CreateScope() {
  asan_finish(fake_stack_, nullptr, nullptr);
  if (!fiber_.self_) {  // the constructor threw: Boost never took the stack
    StackPool::local().deallocate(fiber_.stack_);
    fiber_.state_ = State::finished;
  }
}

Fiber::~Fiber() {
  if (state_ == State::running) die("a fiber was destroyed while running on its own stack");
  unwind();
}

// switch_in() is the caller's half of resume() and unwind(): `how` either
// resumes self_ or destroys it (which makes Boost unwind the fiber).
void Fiber::switch_in(boost::context::fiber (*how)(boost::context::fiber&&)) {
  resumer_ = current_fiber;
  current_fiber = this;
  state_ = State::running;
  void* fake = nullptr;
  asan_start(&fake, static_cast<char*>(stack_.sp) - stack_.size, stack_.size);
  self_ = how(std::move(self_));
  asan_finish(fake, nullptr, nullptr);
  current_fiber = resumer_;
  state_ = self_ ? State::suspended : State::finished;
}

void Fiber::resume() {
  if (state_ != State::created && state_ != State::suspended)
    die("resume() of a fiber that is not suspended");
  switch_in([](boost::context::fiber&& f) { return std::move(f).resume(); });
}

void Fiber::unwind() {
  if (state_ == State::created) {
    skip_entry_ = true;
    resume();
  } else if (state_ == State::suspended) {
    switch_in([](boost::context::fiber&& f) {
      { boost::context::fiber doomed = std::move(f); }  // throws FiberUnwind inside it
      return boost::context::fiber{};
    });
  }
}

void Fiber::suspend() {
  if (current_fiber != this) die("suspend() called outside the fiber");
  if (unwinding_) die("a fiber tried to suspend while it was being unwound");
  current_fiber = resumer_;
  asan_start(&fake_stack_, caller_bottom_, caller_size_);
  try {
    caller_ = std::move(caller_).resume();
  } catch (const FiberUnwind&) {
    asan_finish(fake_stack_, &caller_bottom_, &caller_size_);
    unwinding_ = true;
    throw;
  }
  asan_finish(fake_stack_, &caller_bottom_, &caller_size_);
}

void Fiber::enter(boost::context::fiber&& caller) noexcept {
  asan_finish(nullptr, &caller_bottom_, &caller_size_);
  caller_ = std::move(caller);
}

boost::context::fiber Fiber::leave() noexcept {
  if (unwinding_) die("a fiber body swallowed FiberUnwind; a catch (...) must rethrow it");
  // This fiber dies: ASan may free its fake stack now.
  asan_start(nullptr, caller_bottom_, caller_size_);
  return std::move(caller_);
}

void Fiber::leave_unwinding() noexcept { asan_start(nullptr, caller_bottom_, caller_size_); }

}  // namespace fiberloop::detail
