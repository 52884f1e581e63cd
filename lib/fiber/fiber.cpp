#include "fiberloop/detail/fiber.hpp"

#include <execinfo.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <type_traits>

#include "fiber_switch.hpp"

namespace fiberloop::detail {

constinit thread_local FiberThread fiber_thread;

namespace {

[[noreturn]] void die(const char* why) {
  std::fprintf(stderr, "fiberloop: %s\n", why);
  std::abort();
}

using boost::context::detail::jump_fcontext;
using boost::context::detail::make_fcontext;

// The deepest walk backtrace() makes; deeper frames are left out.
constexpr int kMaxBacktrace = 128;

}  // namespace

Fiber* Fiber::current() noexcept { return fiber_thread.current; }

int Fiber::uncaught_exceptions() const noexcept {
  if (state_ == State::running) return std::uncaught_exceptions();
  return static_cast<int>(exceptions_.uncaught);
}

bool Fiber::current_chain_unwinding() noexcept {
  if (fiber_thread.unwinding == 0) return false;
  for (Fiber* f = fiber_thread.current; f; f = f->resumer_) {
    if (f->unwinding_) return true;
  }
  return false;
}

void Fiber::start(void* top) noexcept {
  static_assert(std::is_standard_layout_v<Fiber> && offsetof(Fiber, self_) == 0,
                "the loop reads a parked fiber's context at its address (HandleState::warm)");
  auto room = static_cast<std::size_t>(static_cast<char*>(top) -
                                       (static_cast<char*>(stack_.sp) - stack_.size));
  self_ = make_fcontext(top, room, &Fiber::enter);
  state_ = State::created;
  exited_ = false;
#ifdef FIBERLOOP_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

// The stack and its slot stay named: restart() runs on them again.
void Fiber::give_back_stack() noexcept { give_back_fiber_stack(slot_); }

void Fiber::destroy_unfinished() {
  if (state_ == State::running) die("a fiber was destroyed while running on its own stack");
  if (state_ == State::forwarding) die("a fiber was destroyed while its resumer waits for it");
  unwind();
}

// switch_in() is the caller's half of resume() and unwind(): it runs the
// fiber until it suspends or ends, and gives back the stack of one that ended.
void Fiber::switch_in() {
  FIBERLOOP_ASSERT(state_ == State::created || state_ == State::suspended,
                   "a fiber switched into while running, forwarding or finished");
  resumer_ = fiber_thread.current;
  fiber_thread.current = this;
  state_ = State::running;
  void* fake = nullptr;
#ifdef FIBERLOOP_TSAN
  tsan_resumer_ = __tsan_get_current_fiber();
#endif
  // The fiber's exception state in, ours parked in its place until it comes
  // back: the fiber's side of a switch does nothing for it.
  swap_exception_state(thread_exception_state(), &exceptions_);
  asan_start(&fake, static_cast<char*>(stack_.sp) - stack_.size, stack_.size);
  tsan_switch(tsan_fiber_);
  self_ = jump_fcontext(std::exchange(self_, nullptr), this).fctx;
  tsan_switch(tsan_resumer_);
  asan_finish(fake, nullptr, nullptr);
  // Read again after the jump rather than kept across it (the cost:
  // docs/performance.md); known filled now.
  swap_exception_state(fiber_thread.exceptions, &exceptions_);
  fiber_thread.current = resumer_;
  if (!exited_) {
    state_ = State::suspended;
    return;
  }
  self_ = nullptr;  // the context it left from is dead
  FIBERLOOP_ASSERT(slot_, "a fiber ended without a stack to give back");
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
  if (fiber_thread.current != this) die("forward() called outside the fiber");
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
    request_ = Request::unwind;
    switch_in();
  }
}

int Fiber::backtrace(void** frames, int max) {
  if (state_ != State::suspended || max <= 0) return 0;
  request_ = Request::backtrace;
  backtrace_frames_ = frames;
  backtrace_max_ = max;
  switch_in();
  return std::exchange(backtrace_max_, 0);
}

// serve_request() runs on the fiber right after a switch in that asked for
// more than going on. A walk switches straight back out, so that to the
// code that suspended, nothing happened; an unwinding raises FiberUnwind.
[[gnu::noinline]] void Fiber::serve_request() {
  while (request_ == Request::backtrace) {
    request_ = Request::none;
    // Frame 0 is this function: the fiber's own frames start above it.
    void* frames[kMaxBacktrace + 1];
    int n = ::backtrace(frames, std::min(backtrace_max_, kMaxBacktrace) + 1);
    n = n > 0 ? n - 1 : 0;
    std::copy_n(frames + 1, n, backtrace_frames_);
    backtrace_max_ = n;
    switch_out();
  }
  if (request_ == Request::unwind) {
    request_ = Request::none;
    unwinding_ = true;
    ++fiber_thread.unwinding;
    throw FiberUnwind();
  }
}

void Fiber::suspend() {
  if (fiber_thread.current != this) die("suspend() called outside the fiber");
  if (unwinding_) {
    die("a fiber tried to suspend (wait or yield) while it was being unwound: "
        "a catch (...) swallowed FiberUnwind, or a destructor waits during the unwinding");
  }
  suspend_unchecked();
}

void Fiber::suspend_unchecked() { suspend_inline(); }

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
  if (unwinding_) --fiber_thread.unwinding;
  destroy_entry();
  exited_ = true;
  fiber_thread.current = resumer_;
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
