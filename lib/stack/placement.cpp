// placement.cpp: a task state placed at the top of its own fiber stack, the
// stack below it for the state's fiber, and both given back.
#include <algorithm>
#include <cstdint>
#include <new>

#include "pool_thread.hpp"

namespace fiberloop::detail {
namespace {

// A placed task state keeps its slot's address in the top 8 bytes of its
// stack. Stack tops are page-aligned (multiples of 4 KiB), and the state
// starts less than 4 KiB below its top, or exactly 4 KiB below when so
// aligned: release_with_stack() finds the top from the state's address.
constexpr std::uintptr_t kTopAlign = 4096;
inline StackSlot*& link_below(std::uintptr_t top) noexcept {
  return *reinterpret_cast<StackSlot**>(top - sizeof(StackSlot*));
}
inline std::uintptr_t top_above(const void* state) noexcept {
  return (reinterpret_cast<std::uintptr_t>(state) | (kTopAlign - 1)) + 1;
}

// take_stack_slow() is take_fiber_stack() without a placed task state: a
// Generator's stack, or any fiber's in sanitizer builds.
[[gnu::noinline]] FiberStack take_stack_slow(std::size_t size, StackLabel label) {
  PoolCore::SizeClass& c = local_class(size);
  StackSlot* s = c.core->take_labelled(c, label);
  return {PoolCore::context_of(s), s};
}

// place_state() puts a task state of `size` bytes at the top of slot s and
// leaves the rest of the stack pending for the state's fiber.
[[gnu::always_inline]] inline void* place_state(PoolCore::SizeClass& c, StackSlot* s,
                                                std::size_t size, std::size_t align) noexcept {
  s->holders = 2;  // the state, and the fiber it builds next
  auto top = reinterpret_cast<std::uintptr_t>(s->top);
  // 16 bytes above the state: the link to its slot, and 8 that keep the
  // state's end off the top.
  std::uintptr_t at = (top - size - 16) & ~(align - 1);
  link_below(top) = s;
  pool_thread.parked.stack.sp = reinterpret_cast<void*>(at);
  pool_thread.parked.stack.size = c.usable - (top - at);
  pool_thread.parked.slot = s;
  return reinterpret_cast<void*>(at);
}

[[gnu::noinline]] void* allocate_with_stack_slow(std::size_t size, std::size_t align,
                                                 std::size_t stack_size) {
  if (!placed_on_stack(size, align))
    return ::operator new (size, std::align_val_t{std::max<std::size_t>(align, 16)});
  PoolCore::SizeClass& c = local_class(stack_size);
  return place_state(c, c.core->take_from(c), size, std::max<std::size_t>(align, 16));
}

}  // namespace

void give_back_fiber_stack(StackSlot* slot) noexcept {
  // A stack released on another thread, or after this thread's pool died (a
  // static Generator), goes to its owner's remote list or orphaned core.
  release_slot(slot, true);
}

FiberStack take_fiber_stack(std::size_t size, StackLabel label) {
  if (StackSlot* s = pool_thread.parked.slot) [[likely]] {
    // The stack below a task state placed by allocate_with_stack(): the
    // slot already counts the fiber as its second holder, and put_back()
    // left it labelled a Generator's.
    pool_thread.parked.slot = nullptr;
    if (label.number) label_slot(s, label);
    return {pool_thread.parked.stack, s};
  }
  return take_stack_slow(size, label);
}

void* allocate_with_stack(std::size_t size, std::size_t align, std::size_t stack_size) {
  // The common spawn: the default size, a stack freed before. Nothing on
  // this path calls out, so it saves no registers.
  PoolCore::SizeClass* c = pool_thread.default_class;
  StackSlot* s;
  if (!kPlaceStates || size > kMaxPlacedState || align > 16 || stack_size || !c ||
      c->core->remote.load(std::memory_order_relaxed) || !(s = c->core->take_cached(*c)))
      [[unlikely]]
    return allocate_with_stack_slow(size, align, stack_size);
  return place_state(*c, s, size, 16);
}

void release_with_stack(void* p, std::size_t size, std::size_t align) noexcept {
  if (!placed_on_stack(size, align)) {
    ::operator delete (p, std::align_val_t{std::max<std::size_t>(align, 16)});
    return;
  }
  StackSlot* s = link_below(top_above(p));
  if (pool_thread.parked.slot == s) [[unlikely]] {
    // The constructor threw before its fiber took the stack below: the
    // fiber's hold goes with it.
    pool_thread.parked.slot = nullptr;
    --s->holders;
  }
  release_slot(s, false);
}

}  // namespace fiberloop::detail
