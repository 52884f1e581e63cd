// detail/fiber.hpp: the one class that owns a boost::context::fiber.
#pragma once

#include <boost/context/fiber.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "fiberloop/errors.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/stack.hpp"

namespace fiberloop::detail {

// Fiber runs one entry function on its own pooled stack and performs every
// switch into and out of it, telling ASan about each one (Boost's
// fcontext backend has no sanitizer hooks; folly::fibers annotates the same
// way). Generator builds on it; nothing else switches stacks.
//
// Invariant: state_ is created (never resumed), running (on this thread's
// stack now), suspended (self_ holds it) or finished (stack given back).
class FIBERLOOP_API Fiber {
 public:
  Fiber() noexcept = default;
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
  // ~Fiber() unwinds a suspended fiber (its RAII destructors run).
  ~Fiber();

  // create() allocates the stack and places `entry` on it; entry runs at the
  // first resume(). entry may throw nothing but FiberUnwind.
  template <class Entry>
  void create(std::size_t stack_size, Entry&& entry);

  // resume() switches to the fiber until it suspends or finishes.
  void resume();
  // suspend() switches from inside the fiber back to whoever resumed it.
  // Throws FiberUnwind when the fiber is being destroyed.
  void suspend();
  // unwind() ends a fiber from outside: a suspended one unwinds from its
  // suspension point; one never resumed finishes without running its entry.
  void unwind();

  bool started() const noexcept { return state_ != State::created; }
  bool running() const noexcept { return state_ == State::running; }
  bool finished() const noexcept { return state_ == State::finished; }

  // current() is the fiber running on this thread, or nullptr on a thread stack.
  static Fiber* current() noexcept;

 private:
  enum class State : std::uint8_t { created, running, suspended, finished };

  // CreateScope brackets the constructor's visit to the new stack for ASan,
  // and gives the stack back if the constructor throws.
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
  boost::context::fiber leave() noexcept;
  void leave_unwinding() noexcept;
  void switch_in(boost::context::fiber (*how)(boost::context::fiber&&));

  boost::context::fiber self_;    // the fiber while suspended or created
  boost::context::fiber caller_;  // where to go back to, while running
  boost::context::stack_context stack_{};
  Fiber* resumer_ = nullptr;  // Fiber::current() of whoever resumed us
  State state_ = State::finished;
  bool skip_entry_ = false;  // unwind() before the first resume
  bool unwinding_ = false;
  // Sanitizer bookkeeping; unused otherwise.
  void* fake_stack_ = nullptr;
  const void* caller_bottom_ = nullptr;
  std::size_t caller_size_ = 0;
};

template <class Entry>
void Fiber::create(std::size_t stack_size, Entry&& entry) {
  stack_ = StackPool::local().allocate(stack_size);
  // Boost's constructor steps onto the new stack once; ASan must know, or the
  // new fiber's first frame lands in the creator's fake stack.
  CreateScope scope(*this);
  self_ = boost::context::fiber(
      std::allocator_arg, PooledStack(stack_),
      [this, entry = std::forward<Entry>(entry)](boost::context::fiber&& caller) mutable {
        enter(std::move(caller));
        if (!skip_entry_) {
          try {
            entry();
          } catch (const FiberUnwind&) {
            leave_unwinding();
            throw;  // Boost's own frame catches it and frees the stack
          }
        }
        return leave();
      });
  state_ = State::created;
}

}  // namespace fiberloop::detail
