// detail/fiber.hpp: the one class that switches stacks.
#pragma once

#include <boost/context/detail/fcontext.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "fiberloop/detail/stack_placement.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// Fiber runs one entry function on its own pooled stack and performs every
// switch into and out of it, telling ASan and TSan about each one (Boost's
// fcontext has no sanitizer hooks; folly::fibers annotates the same way).
// It uses Boost.Context's bare fcontext switch: creating a fiber costs no
// switch, ending one no extra trip, and unwinding one is our own
// FiberUnwind thrown at its suspension point. Generator and Task build on
// it; nothing else switches stacks.
//
// Each fiber has its own C++ exception state: the exceptions being handled
// (what `throw;` and std::current_exception() see) and the count in flight
// (std::uncaught_exceptions()). The runtime keeps them per thread, so every
// switch swaps the thread's record with the fiber's (ExceptionState): a
// catch block that waits, then rethrows, rethrows its own exception.
//
// Invariant: state_ is created (never resumed), running (on this thread's
// stack now), suspended, forwarding (suspended while its resumer runs a wait
// on its behalf, see forward()) or finished (stack given back). A Fiber
// never moves once created: its context refers to `this`.
class FIBERLOOP_API Fiber {
 public:
  // ForwardFn is a request a fiber makes of whoever resumed it (forward()).
  using ForwardFn = void (*)(void* arg);

  Fiber() noexcept = default;
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
  // ~Fiber() unwinds a suspended fiber (its RAII destructors run). Inline
  // for the common end, a fiber that finished.
  ~Fiber() {
    if (state_ != State::finished) [[unlikely]]
      destroy_unfinished();
  }

  // create() allocates the stack (labelled for overflow reports) and places
  // `entry` at its top; entry runs at the first resume(). entry may throw
  // nothing but FiberUnwind.
  template <class Entry>
  void create(std::size_t stack_size, Entry&& entry, StackLabel label = {});
  // create(stack, entry) is create() on a stack the caller was given with
  // its owner's room (place_state()): from this call on the fiber holds the
  // stack, and gives it back even if building entry throws.
  template <class Entry>
  void create(FiberStack stack, Entry&& entry);

  // resume() switches to the fiber until it suspends or finishes. While the
  // fiber asks for forwarded calls (forward()), resume() makes them here, on
  // the resumer's stack, and switches back in after each.
  void resume();
  // suspend() switches from inside the fiber back to whoever resumed it.
  // Throws FiberUnwind when the fiber is being destroyed.
  void suspend();
  // suspend_unchecked() is suspend() for a caller that has made its checks:
  // it runs inside this fiber, and no fiber on this thread is unwinding.
  void suspend_unchecked();
  // forward(fn, arg), from inside the fiber, has the resumer's resume() call
  // fn(arg) on the resumer's own stack, then resumes this fiber: what fn
  // throws is rethrown here (FiberUnwind excepted: that unwinds the
  // resumer, and this fiber is unwound when its owner goes). A generator
  // driven by a task waits this way, without knowing what a wait is.
  void forward(ForwardFn fn, void* arg);
  // unwind() ends a fiber from outside: a suspended one unwinds from its
  // suspension point; one never resumed finishes without running its entry.
  void unwind();
  // backtrace(frames, max) fills frames with the return addresses of a
  // suspended fiber's stack, innermost first, and returns how many: it
  // switches in, lets the fiber walk its own stack with the unwinder C++
  // exceptions use (its .eh_frame tables hold under -O2, where a frame
  // pointer walk would not), and switches back, nothing else of the fiber
  // running. 0 for a fiber that is not suspended (running, forwarding,
  // never started, finished).
  int backtrace(void** frames, int max);

  // restartable(): finished, its entry object intact (trivially
  // destructible: never destroyed). restart() then makes it a new fiber
  // running the same entry on the same stack, once the stack is held again:
  // it was given back at the end, and stack_slot() still names it.
  bool restartable() const noexcept { return state_ == State::finished && !destroy_; }
  StackSlot* stack_slot() const noexcept { return slot_; }
  void restart() noexcept {
    // A new context rather than the one the fiber ended in: resuming that
    // one measured slower (docs/performance.md, "Costs behind the shape of the code").
    char* top = static_cast<char*>(entry_);
    auto room = static_cast<std::size_t>(top - (static_cast<char*>(stack_.sp) - stack_.size));
    self_ = boost::context::detail::make_fcontext(top, room, &Fiber::enter);
    state_ = State::created;
    exited_ = false;
  }

  bool started() const noexcept { return state_ != State::created; }
  bool running() const noexcept { return state_ == State::running; }
  // busy(): running, or parked while its resumer makes a forwarded call.
  bool busy() const noexcept { return state_ == State::running || state_ == State::forwarding; }
  bool finished() const noexcept { return state_ == State::finished; }
  // unwinding(): FiberUnwind was raised in it (its destructors are running).
  bool unwinding() const noexcept { return unwinding_; }
  // uncaught_exceptions() is std::uncaught_exceptions() as the fiber's own
  // code sees it: its saved count while parked, the thread's while it runs.
  int uncaught_exceptions() const noexcept;

  // ExceptionState mirrors the Itanium C++ ABI's __cxa_eh_globals (g++'s
  // libsupc++ and LLVM's libc++abi lay it out alike): the stack of caught
  // exceptions and the count of those in flight. Swapped whole, 16 bytes.
  struct alignas(16) ExceptionState {
    void* caught = nullptr;
    unsigned int uncaught = 0;
  };
  static_assert(sizeof(ExceptionState) == 16);

  // current() is the fiber running on this thread, or nullptr on a thread stack.
  static Fiber* current() noexcept;
  // current_chain_unwinding() is true when the running fiber, or a fiber
  // that (transitively) resumed it, is being unwound.
  static bool current_chain_unwinding() noexcept;

 private:
  using fcontext_t = boost::context::detail::fcontext_t;
  using transfer_t = boost::context::detail::transfer_t;
  enum class State : std::uint8_t { created, running, suspended, forwarding, finished };

  // start(top) makes the context that enters run_entry() at the first
  // switch, its frames below `top` (where the entry object lies).
  void start(void* top) noexcept;
  static void enter(transfer_t from) noexcept;
  [[noreturn]] void exit() noexcept;
  void switch_in();
  // suspend_inline() is suspend_unchecked(), inline in a task's wait
  // (lib/fiber_switch.hpp).
  friend class TaskStateBase;
  void suspend_inline();
  // switch_out() is the fiber's side of every switch back to its resumer;
  // serve_request() does what request_ asks after one.
  void switch_out();
  void serve_request();
  void serve_forwards();
  void give_back_stack() noexcept;
  void destroy_unfinished();
  void destroy_entry() noexcept {
    if (destroy_) destroy_(entry_);
  }

  // self_ stays the first member: the loop reads it through a task step's
  // HandleState::warm to prefetch the saved context.
  fcontext_t self_ = nullptr;  // the fiber while suspended or created
  fcontext_t caller_ = nullptr;  // where to go back to, while running
  // What every switch reads or writes follows, in the same cache line.
  Fiber* resumer_ = nullptr;  // Fiber::current() of whoever resumed us
  State state_ = State::finished;
  // What the next switch in asks of the fiber besides going on: raise
  // FiberUnwind, or walk its stack (backtrace()). One byte, so that the
  // check after every switch stays one compare.
  enum class Request : std::uint8_t { none, unwind, backtrace };
  Request request_ = Request::none;
  bool unwinding_ = false;
  bool exited_ = false;  // the entry returned: the stack is free to give back
  // The fiber's exception state while it is parked; its resumer's while it
  // runs (switch_in() swaps them on the way in and on the way back).
  ExceptionState exceptions_;
  boost::context::stack_context stack_{};
  StackSlot* slot_ = nullptr;  // stack_'s side-table entry, for giving it back
  void* entry_ = nullptr;  // the entry object, at the stack's top
  void (*run_)(void* entry) = nullptr;
  void (*destroy_)(void* entry) noexcept = nullptr;
  ForwardFn forward_fn_ = nullptr;  // a request for the resumer
  void* forward_arg_ = nullptr;
  std::exception_ptr forward_error_;  // what the forwarded call threw
  // Sanitizer bookkeeping; unused otherwise (present in every build: one layout).
  void* fake_stack_ = nullptr;
  const void* caller_bottom_ = nullptr;
  std::size_t caller_size_ = 0;
  void* tsan_fiber_ = nullptr;
  void* tsan_resumer_ = nullptr;
  void** backtrace_frames_ = nullptr;  // backtrace()'s buffer, while it runs
  int backtrace_max_ = 0;
};

template <class Entry>
void Fiber::create(std::size_t stack_size, Entry&& entry, StackLabel label) {
  create(take_fiber_stack(stack_size, label), std::forward<Entry>(entry));
}

template <class Entry>
void Fiber::create(FiberStack stack, Entry&& entry) {
  using Stored = std::decay_t<Entry>;
  static_assert(alignof(Stored) <= 64, "a fiber entry object is aligned to at most 64 bytes");
  stack_ = stack.stack;
  slot_ = stack.slot;
  auto top = reinterpret_cast<std::uintptr_t>(stack_.sp);
  void* at = reinterpret_cast<void*>((top - sizeof(Stored)) & ~std::uintptr_t{63});
  try {
    entry_ = ::new (at) Stored(std::forward<Entry>(entry));
  } catch (...) {
    give_back_stack();
    throw;
  }
  run_ = [](void* e) { (*static_cast<Stored*>(e))(); };
  if constexpr (std::is_trivially_destructible_v<Stored>) {
    destroy_ = nullptr;  // nothing to run: the entry stays, for restart()
  } else {
    destroy_ = [](void* e) noexcept { static_cast<Stored*>(e)->~Stored(); };
  }
  start(at);
}

}  // namespace fiberloop::detail
