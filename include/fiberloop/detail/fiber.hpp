// detail/fiber.hpp: the one class that owns a boost::context::fiber.
#pragma once

#include <boost/context/fiber.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <utility>

#include "fiberloop/errors.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/stack.hpp"

namespace fiberloop::detail {

// Fiber runs one entry function on its own pooled stack and performs every
// switch into and out of it, telling ASan and TSan about each one (Boost's
// fcontext backend has no sanitizer hooks; folly::fibers annotates the same
// way). Generator builds on it; nothing else switches stacks.
//
// Invariant: state_ is created (never resumed), running (on this thread's
// stack now), suspended (self_ holds it), forwarding (suspended while its
// resumer runs a wait on its behalf, see forward()) or finished (stack given
// back). A Fiber never moves once created: the entry lambda holds `this`.
class FIBERLOOP_API Fiber {
 public:
  // ForwardFn is a request a fiber makes of whoever resumed it (forward()).
  using ForwardFn = void (*)(void* arg);

  Fiber() noexcept = default;
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
  // ~Fiber() unwinds a suspended fiber (its RAII destructors run).
  ~Fiber();

  // create() allocates the stack and places `entry` on it; entry runs at the
  // first resume(). entry may throw nothing but FiberUnwind.
  template <class Entry>
  void create(std::size_t stack_size, Entry&& entry);

  // resume() switches to the fiber until it suspends or finishes. While the
  // fiber asks for forwarded calls (forward()), resume() makes them here, on
  // the resumer's stack, and switches back in after each.
  void resume();
  // suspend() switches from inside the fiber back to whoever resumed it.
  // Throws FiberUnwind when the fiber is being destroyed.
  void suspend();
  // forward(fn, arg), from inside the fiber, has the resumer's resume() call
  // fn(arg) on the resumer's own stack, then resumes this fiber: what fn
  // throws is rethrown here (FiberUnwind excepted: that unwinds the
  // resumer, and this fiber is unwound when its owner goes). A generator
  // driven by a task waits this way, without knowing what a wait is.
  void forward(ForwardFn fn, void* arg);
  // unwind() ends a fiber from outside: a suspended one unwinds from its
  // suspension point; one never resumed finishes without running its entry.
  void unwind();

  bool started() const noexcept { return state_ != State::created; }
  bool running() const noexcept { return state_ == State::running; }
  // busy(): running, or parked while its resumer makes a forwarded call.
  bool busy() const noexcept { return state_ == State::running || state_ == State::forwarding; }
  bool finished() const noexcept { return state_ == State::finished; }
  // unwinding(): FiberUnwind was raised in it (its destructors are running).
  bool unwinding() const noexcept { return unwinding_; }

  // current() is the fiber running on this thread, or nullptr on a thread stack.
  static Fiber* current() noexcept;
  // current_chain_unwinding() is true when the running fiber, or a fiber
  // that (transitively) resumed it, is being unwound.
  static bool current_chain_unwinding() noexcept;

 private:
  enum class State : std::uint8_t { created, running, suspended, forwarding, finished };

  // CreateScope brackets the constructor's visit to the new stack for the
  // sanitizers, and gives the stack back if the constructor throws.
  class FIBERLOOP_API CreateScope {
   public:
    explicit CreateScope(Fiber& fiber) noexcept;
    ~CreateScope();
    CreateScope(const CreateScope&) = delete;
    CreateScope& operator=(const CreateScope&) = delete;

   private:
    Fiber& fiber_;
    void* fake_stack_ = nullptr;
  };

  void enter(boost::context::fiber&& caller) noexcept;
  boost::context::fiber leave();
  void leave_unwinding() noexcept;
  boost::context::detail::fcontext_t take_unwind_context() noexcept;
  void switch_in(bool destroy);

  boost::context::fiber self_;    // the fiber while suspended or created
  boost::context::fiber caller_;  // where to go back to, while running
  boost::context::stack_context stack_{};
  Fiber* resumer_ = nullptr;  // Fiber::current() of whoever resumed us
  State state_ = State::finished;
  bool skip_entry_ = false;  // unwind() before the first resume
  bool unwinding_ = false;
  bool parked_ = false;  // TSan builds: finished, waiting to be unwound from outside
  // Boost's unwind context, kept while FiberUnwind (ours) crosses user code.
  boost::context::detail::fcontext_t unwind_fctx_ = nullptr;
  ForwardFn forward_fn_ = nullptr;  // a request for the resumer
  void* forward_arg_ = nullptr;
  std::exception_ptr forward_error_;  // what the forwarded call threw
  // Sanitizer bookkeeping; unused otherwise (present in every build: one layout).
  void* fake_stack_ = nullptr;
  const void* caller_bottom_ = nullptr;
  std::size_t caller_size_ = 0;
  void* tsan_fiber_ = nullptr;
  void* tsan_resumer_ = nullptr;
};

template <class Entry>
void Fiber::create(std::size_t stack_size, Entry&& entry) {
  FiberStack taken = take_fiber_stack(stack_size);
  stack_ = taken.stack;
  // Boost's constructor steps onto the new stack once; the sanitizers must
  // know, or the new fiber's first frame lands in the creator's fake stack.
  CreateScope scope(*this);
  self_ = boost::context::fiber(
      std::allocator_arg, PooledStack(stack_, taken.slot),
      [this, entry = std::forward<Entry>(entry)](boost::context::fiber&& caller) mutable {
        enter(std::move(caller));
        try {
          if (!skip_entry_) entry();
          return leave();
        } catch (const FiberUnwind&) {
          // Our FiberUnwind crossed the user's frames; Boost's frame below
          // needs its own exception back to free the stack. It is thrown
          // here, in the TU that instantiated Boost's catch, so both agree
          // on its layout whatever NDEBUG says.
          leave_unwinding();
          throw boost::context::detail::forced_unwind(take_unwind_context());
        }
      });
  state_ = State::created;
}

}  // namespace fiberloop::detail
