// detail/stack_placement.hpp: a task state placed at the top of its own fiber
// stack, the stack below it for the state's fiber, and how both go back.
#pragma once

#include <boost/context/stack_context.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// StackSlot is a stack's side-table entry (lib/stack/stack_arena.hpp).
struct StackSlot;

// FiberStack is a stack for Fiber::create() and its side-table entry.
struct FiberStack {
  boost::context::stack_context stack;
  StackSlot* slot;
};

// StackLabel names the owner of a stack, for an overflow report: a task,
// whose name it prints (`name` must outlive the stack; when it is empty,
// "Task-<number>" is printed), or, with number 0, a Generator.
struct StackLabel {
  const std::string* name = nullptr;
  std::uint64_t number = 0;
};

// A task state up to kMaxPlacedState bytes lives at the top of its own stack:
// a parked task then touches one page, not a page and a heap block. Larger
// states (big captures or results) would push the frames onto a second page.
// Not in sanitizer builds (kPlaceStates), where ASan must see each task state
// as a heap block. The alignment bound keeps a state within 4 KiB of its
// stack's top, where giving it back finds the stack (lib/stack/placement.cpp).
inline constexpr std::size_t kMaxPlacedState = 1024;
inline constexpr std::size_t kMaxPlacedAlign = 4096;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kPlaceStates = false;
#else
inline constexpr bool kPlaceStates = true;
#endif
constexpr bool placed_on_stack(std::size_t size, std::size_t align) noexcept {
  return kPlaceStates && size <= kMaxPlacedState && align <= kMaxPlacedAlign;
}

// PlacedState is what place_state() hands out: room for a task state and
// the stack its fiber runs on, taken together so that nothing waits on the
// thread for a later call to pick up.
struct PlacedState {
  void* state;
  FiberStack stack;
};

// place_state(size, align, stack_size, label) returns room for an object of
// `size` bytes aligned to `align` (0: the default new alignment) and a stack
// of stack_size (0: the default) labelled `label`, for the object's fiber.
// When placed_on_stack(size, align), the room is at the top of that same
// stack and the stack handed out is the part below it, so that an idle task
// touches one page: its state and its frames. Otherwise (sanitizer builds,
// large or over-aligned states) the room is a heap block and the stack a
// whole one. Either way there are two holders, given back separately: the
// stack by give_back_fiber_stack() (Fiber::create(stack, entry) makes that
// the fiber's job), the room by release_placed_state(); a placed slot is
// freed when both have. Throws as StackPool::allocate(); nothing is held then.
FIBERLOOP_API PlacedState place_state(std::size_t size, std::size_t align,
                                      std::size_t stack_size, StackLabel label = {});
// release_placed_state(state, size, align) gives back the room place_state()
// returned, with the same size and align.
FIBERLOOP_API void release_placed_state(void* state, std::size_t size, std::size_t align) noexcept;
// label_fiber_stack(slot, label) labels a stack taken earlier, for an owner
// whose name has an address only once it is built (a task state constructed
// in the room place_state() returned).
FIBERLOOP_API void label_fiber_stack(StackSlot* slot, StackLabel label) noexcept;

// give_back_fiber_stack(slot) is the fiber's release of the stack it took
// (from any thread): the stack's side-table entry travels with the fiber, so
// giving back searches nothing.
FIBERLOOP_API void give_back_fiber_stack(StackSlot* slot) noexcept;

// take_fiber_stack(size, label) is a whole stack of `size` (0: the default)
// from this thread's pool, labelled `label`, for a fiber with no state
// above it (a Generator's). Throws as StackPool::allocate().
FIBERLOOP_API FiberStack take_fiber_stack(std::size_t size, StackLabel label = {});

// RunningLabel is a source for the label of the task running on this
// thread (number 0: none). The overflow reporter calls it from its signal
// handler, to name the task that drove an overflowing Generator: it must be
// async-signal-safe (read a thread-local, build nothing).
using RunningLabel = StackLabel (*)() noexcept;
// set_running_label_source(source) installs it for every thread; the task
// layer does, before main() (lib/task_stack_label.cpp).
FIBERLOOP_API void set_running_label_source(RunningLabel source) noexcept;

}  // namespace fiberloop::detail
