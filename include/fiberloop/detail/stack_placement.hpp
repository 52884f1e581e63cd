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

// take_fiber_stack(size, label) is StackPool::local().allocate(size), or the
// stack below a task state that allocate_with_stack() just placed, labelled
// `label`. Throws as StackPool::allocate().
FIBERLOOP_API FiberStack take_fiber_stack(std::size_t size, StackLabel label = {});
// give_back_fiber_stack(slot) is the fiber's release of the stack it took
// (from any thread): the stack's side-table entry travels with the fiber, so
// giving back searches nothing.
FIBERLOOP_API void give_back_fiber_stack(StackSlot* slot) noexcept;

// allocate_with_stack(size, align, stack_size) returns room for an object of
// `size` bytes at the top of a new stack of stack_size (0: the default), so
// that an idle task touches one page: its state and its frames. The next
// take_fiber_stack() on this thread returns the stack below it. The slot is
// freed when both the fiber and release_with_stack() gave it back.
// Sanitizer builds use the heap instead (ASan then sees every use after
// free). Throws as StackPool::allocate().
FIBERLOOP_API void* allocate_with_stack(std::size_t size, std::size_t align,
                                        std::size_t stack_size);
// A task state up to kMaxPlacedState bytes lives at the top of its own stack
// (allocate_with_stack()): a parked task then touches one page, not a page
// and a heap block. Larger states (big captures or results) would push the
// frames onto a second page. Not in sanitizer builds (kPlaceStates), where
// ASan must see each task state as a heap block. The alignment bound keeps a
// state within 4 KiB of its stack's top.
inline constexpr std::size_t kMaxPlacedState = 1024;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kPlaceStates = false;
#else
inline constexpr bool kPlaceStates = true;
#endif
constexpr bool placed_on_stack(std::size_t size, std::size_t align) noexcept {
  return kPlaceStates && size <= kMaxPlacedState && align <= 4096;
}
// release_with_stack(p, size) gives back what allocate_with_stack() returned;
// it also cancels a pending stack never taken (a constructor that threw).
FIBERLOOP_API void release_with_stack(void* p, std::size_t size, std::size_t align) noexcept;

}  // namespace fiberloop::detail
