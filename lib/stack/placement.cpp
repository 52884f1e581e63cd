// placement.cpp: a task state placed at the top of its own fiber stack, the
// stack below it handed out with it, and both given back.
#include <algorithm>
#include <cstdint>
#include <new>

#include "pool_thread.hpp"

namespace fiberloop::detail {
namespace {

// A placed state keeps its slot's address in the top 8 bytes of its stack,
// so that giving the state back finds the slot from the state's address
// alone: stack tops are page-aligned (multiples of 4 KiB), and a state
// starts less than 4 KiB below its top, or exactly 4 KiB below when so
// aligned.
constexpr std::uintptr_t kTopAlign = 4096;
constexpr std::size_t kLinkBytes = 8;
// Above the state: the link to its slot, and 8 bytes that keep the state's
// end off the top.
constexpr std::size_t kAboveState = kLinkBytes + 8;
// A state asks for align 0 when the heap's alignment suits it (task.hpp's
// unaligned operator new), and the fiber's stack ends where the state
// begins: both need this much.
constexpr std::size_t kMinAlign = 16;
// A state starts on a cache line: its members are ordered so that a task's
// step touches few lines (task_state.hpp), which holds only from a line's
// start. It costs at most 48 bytes of the stack.
constexpr std::size_t kLineAlign = 64;
static_assert(sizeof(StackSlot*) <= kLinkBytes, "the link fits the top 8 bytes");
static_assert(kMaxPlacedState + kAboveState + 48 <= kTopAlign,
              "the largest placed state starts less than 4 KiB below its top");
static_assert(kMaxPlacedAlign <= kTopAlign,
              "an over-aligned placed state starts at most 4 KiB below its top");
static_assert(kMinAlign >= __STDCPP_DEFAULT_NEW_ALIGNMENT__ && kMinAlign % 16 == 0,
              "a placed state is aligned as a heap block, its stack's top as a fiber's");

inline StackSlot*& link_below(std::uintptr_t top) noexcept {
  return *reinterpret_cast<StackSlot**>(top - sizeof(StackSlot*));
}
inline StackSlot* slot_of_state(const void* state) noexcept {
  return link_below((reinterpret_cast<std::uintptr_t>(state) | (kTopAlign - 1)) + 1);
}

void* heap_state(std::size_t size, std::size_t align) {
  return ::operator new (size, std::align_val_t{std::max(align, kMinAlign)});
}

// place_on(c, s, size, align) puts a state of `size` bytes at the top of
// slot s, of class c, and hands out the rest of the stack with it.
[[gnu::always_inline]] inline PlacedState place_on(PoolCore::SizeClass& c, StackSlot* s,
                                                   std::size_t size, std::size_t align) noexcept {
  s->holders = 2;  // the state, and the fiber that takes the stack below it
  auto top = reinterpret_cast<std::uintptr_t>(s->top);
  std::uintptr_t at = (top - size - kAboveState) & ~(align - 1);
  link_below(top) = s;
  PlacedState placed{reinterpret_cast<void*>(at), {{}, s}};
  placed.stack.stack.sp = placed.state;
  placed.stack.stack.size = c.usable - (top - at);
  return placed;
}

// take_hot(size, align, stack_size, c, s) takes the slot s of class c for
// the common spawn: a small state, the default size, a stack freed before.
// False when the spawn is another.
[[gnu::always_inline]] inline bool take_hot(std::size_t size, std::size_t align,
                                            std::size_t stack_size, PoolCore::SizeClass*& c,
                                            StackSlot*& s) noexcept {
  c = pool_thread.default_class;
  return kPlaceStates && size <= kMaxPlacedState && align <= kMinAlign && !stack_size && c &&
         !c->core->remote.load(std::memory_order_relaxed) && (s = c->core->take_cached(*c));
}

// take_whole_stack(size, label) is a stack with no state above it: a
// Generator's, or the fiber's of a state on the heap.
[[gnu::noinline]] FiberStack take_whole_stack(std::size_t size, StackLabel label) {
  PoolCore::SizeClass& c = local_class(size);
  StackSlot* s = c.core->take_labelled(c, label);
  return {PoolCore::context_of(s), s};
}

// place_slow() is place_state() for any spawn but the common one.
[[gnu::noinline]] PlacedState place_slow(std::size_t size, std::size_t align,
                                         std::size_t stack_size, StackLabel label) {
  if (!placed_on_stack(size, align)) {
    void* state = heap_state(size, align);
    try {
      return {state, take_whole_stack(stack_size, label)};
    } catch (...) {
      ::operator delete (state, std::align_val_t{std::max(align, kMinAlign)});
      throw;
    }
  }
  PoolCore::SizeClass& c = local_class(stack_size);
  PlacedState placed = place_on(c, c.core->take_from(c), size, std::max(align, kLineAlign));
  if (label.number) label_slot(placed.stack.slot, label);
  return placed;
}

[[gnu::always_inline]] inline void release_state(void* state, std::size_t size,
                                                 std::size_t align) noexcept {
  if (!placed_on_stack(size, align)) {
    ::operator delete (state, std::align_val_t{std::max(align, kMinAlign)});
    return;
  }
  release_slot(slot_of_state(state), false);
}

}  // namespace

PlacedState place_state(std::size_t size, std::size_t align, std::size_t stack_size,
                        StackLabel label) {
  PoolCore::SizeClass* c;
  StackSlot* s;
  if (!take_hot(size, align, stack_size, c, s)) [[unlikely]]
    return place_slow(size, align, stack_size, label);
  if (label.number) label_slot(s, label);
  return place_on(*c, s, size, kLineAlign);
}

void release_placed_state(void* state, std::size_t size, std::size_t align) noexcept {
  release_state(state, size, align);
}

void label_fiber_stack(StackSlot* slot, StackLabel label) noexcept { label_slot(slot, label); }

void give_back_fiber_stack(StackSlot* slot) noexcept {
  // A stack released on another thread, or after this thread's pool died (a
  // static Generator), goes to its owner's remote list or orphaned core.
  release_slot(slot, true);
}

FiberStack take_fiber_stack(std::size_t size, StackLabel label) {
  return take_whole_stack(size, label);
}

}  // namespace fiberloop::detail
