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

[[noreturn]] void die(const char* why) {
  std::fprintf(stderr, "fiberloop: %s\n", why);
  std::abort();
}

using boost::context::detail::jump_fcontext;
using boost::context::detail::make_fcontext;

}  // namespace

Fiber* Fiber::current() noexcept { return current_fiber; }

bool Fiber::current_chain_unwinding() noexcept {
  if (unwinding_fibers == 0) return false;
  for (Fiber* f = current_fiber; f; f = f->resumer_) {
    if (f->unwinding_) return true;
  }
  return false;
}

void Fiber::start(void* top) noexcept {
  auto room = static_cast<std::size_t>(static_cast<char*>(top) -
                                       (static_cast<char*>(stack_.sp) - stack_.size));
  self_ = make_fcontext(top, room, &Fiber::enter);
  state_ = State::created;
  exited_ = false;
#ifdef FIBERLOOP_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

void Fiber::give_back_stack() noexcept {
  give_back_fiber_stack(slot_);
  stack_ = {};
  slot_ = nullptr;
}

void Fiber::destroy_unfinished() {
  if (state_ == State::running) die("a fiber was destroyed while running on its own stack");
  if (state_ == State::forwarding) die("a fiber was destroyed while its resumer waits for it");
  unwind();
}

// switch_in() is the caller's half of resume() and unwind(): it runs the
// fiber until it suspends or ends, and gives back the stack of one that ended.
void Fiber::switch_in() {
  resumer_ = current_fiber;
  current_fiber = this;
  state_ = State::running;
  void* fake = nullptr;
#ifdef FIBERLOOP_TSAN
  tsan_resumer_ = __tsan_get_current_fiber();
#endif
  asan_start(&fake, static_cast<char*>(stack_.sp) - stack_.size, stack_.size);
  tsan_switch(tsan_fiber_);
  self_ = jump_fcontext(std::exchange(self_, nullptr), this).fctx;
  tsan_switch(tsan_resumer_);
  asan_finish(fake, nullptr, nullptr);
  current_fiber = resumer_;
  if (!exited_) {
    state_ = State::suspended;
    return;
  }
  self_ = nullptr;  // the context it left from is dead
  give_back_stack();
  state_ = State::finished;
#ifdef FIBERLOOP_TSAN
  __tsan_destroy_fiber(std::exchange(tsan_fiber_, nullptr));
#endif
}

void Fiber::resume() {
  if (state_ != State::created && state_ != State::suspended) [[unlikely]]
    die("resume() of a fiber that is not suspended");
  switch_in();
  if (forward_fn_) [[unlikely]]
    serve_forwards();
}

// serve_forwards() runs, on the resumer's side, what the fiber forwarded to
// it (a generator's wait, for the task that drives it), then resumes it.
[[gnu::noinline]] void Fiber::serve_forwards() {
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
    switch_in();
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
    // Never entered: nothing ran on the stack but the entry's construction.
    destroy_entry();
    self_ = nullptr;
    give_back_stack();
    state_ = State::finished;
#ifdef FIBERLOOP_TSAN
    __tsan_destroy_fiber(std::exchange(tsan_fiber_, nullptr));
#endif
  } else if (state_ == State::suspended) {
    unwind_requested_ = true;
    switch_in();
  }
}

void Fiber::suspend() {
  if (current_fiber != this) die("suspend() called outside the fiber");
  if (unwinding_) {
    die("a fiber tried to suspend (wait or yield) while it was being unwound: "
        "a catch (...) swallowed FiberUnwind, or a destructor waits during the unwinding");
  }
  suspend_unchecked();
}

void Fiber::suspend_unchecked() {
  current_fiber = resumer_;
  asan_start(&fake_stack_, caller_bottom_, caller_size_);
  tsan_switch(tsan_resumer_);
  caller_ = jump_fcontext(std::exchange(caller_, nullptr), nullptr).fctx;
  asan_finish(fake_stack_, &caller_bottom_, &caller_size_);
  if (unwind_requested_) [[unlikely]] {
    unwind_requested_ = false;
    unwinding_ = true;
    ++unwinding_fibers;
    throw FiberUnwind();
  }
}

void Fiber::enter(transfer_t from) noexcept {
  auto* self = static_cast<Fiber*>(from.data);
  self->caller_ = from.fctx;
  asan_finish(nullptr, &self->caller_bottom_, &self->caller_size_);
  try {
    self->run_(self->entry_);
    if (self->unwinding_) {
      die("a fiber body swallowed FiberUnwind: a catch (...) must rethrow it "
          "(catch (const fiberloop::FiberUnwind&) { throw; })");
    }
  } catch (const FiberUnwind&) {
    // The unwinding reached the bottom: every frame above was destroyed.
  }
  self->exit();
}

void Fiber::exit() noexcept {
  if (unwinding_) --unwinding_fibers;
  destroy_entry();
  exited_ = true;
  current_fiber = resumer_;
  fcontext_t to = caller_;
  caller_ = nullptr;
  tsan_switch(tsan_resumer_);
  // This fiber dies: ASan frees its fake stack now, so nothing but the jump
  // may follow (a call could put its frame there).
  asan_start(nullptr, caller_bottom_, caller_size_);
  jump_fcontext(to, nullptr);
  __builtin_unreachable();
}

}  // namespace fiberloop::detail
