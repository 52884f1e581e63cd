// detail/stack_spares.hpp: finished task states kept at the top of their
// stacks for the next task of their type (task recycling).
#pragma once

#include <cstdint>

#include "fiberloop/detail/stack_placement.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// Recycling (detail::TaskState::make()): a finished task state placed on its
// stack, whose fiber has ended, may stay at the top of that stack as its
// type's spare on this thread, for the next task of that type. The pool
// counts its stack among the cached ones.
//
// keep_as_spare(slot) makes the stack a spare's: false (nothing changes)
// unless this thread's pool owns it and it is of the default size.
FIBERLOOP_API bool keep_as_spare(StackSlot* slot) noexcept;
// retake_spare_stack(slot, number) gives a spare's stack to its state's next
// fiber, labelled for task `number` (the name's address is the same).
FIBERLOOP_API void retake_spare_stack(StackSlot* slot, std::uint64_t number) noexcept;
// SpareDropper is a task type's hook for dropping its spare on this thread:
// the pool calls each registered one when it trims, when its default size or
// guard changes (a spare's stack would no longer fit), and when it dies.
struct SpareDropper {
  void (*drop)() noexcept;
  SpareDropper* next = nullptr;
  bool registered = false;
};
FIBERLOOP_API void register_spare_dropper(SpareDropper* dropper) noexcept;

}  // namespace fiberloop::detail
