// pool_thread.hpp (private): this thread's view of its pool, and giving a
// stack back from whichever thread holds it.
#pragma once

#include "fiberloop/detail/stack_placement.hpp"
#include "fiberloop/detail/stack_spares.hpp"
#include "pool_core.hpp"

namespace fiberloop {
namespace detail {

// PoolThread is this thread's view of its pool, in one thread_local so
// that each hot path computes its address once.
struct PoolThread {
  // The pool and its core, while it lives: plain pointers, so that the hot
  // paths skip the thread_local object's initialisation guard.
  StackPool* pool = nullptr;
  PoolCore* core = nullptr;
  // The core's class for the pool's default size and guard, once asked for
  // (null again when either changes, and under memcheck): a spawn without a
  // stack size goes straight to it, skipping the checks and the search.
  PoolCore::SizeClass* default_class = nullptr;
  // The task types with a spare hook registered on this thread.
  SpareDropper* spares = nullptr;
};
extern constinit thread_local PoolThread pool_thread;

// local_class(stack_size) is the size class of this thread's pool that
// stacks and placed states are taken from. Throws as StackPool::allocate().
inline PoolCore::SizeClass& local_class(std::size_t stack_size) {
  PoolCore::SizeClass* c = pool_thread.default_class;
  if (!stack_size && c) [[likely]]
    return *c;
  return PoolCore::class_for_local(stack_size);
}

// give_to_owner(s) drops one holder of slot s, which another thread's pool
// (or an orphaned core) owns: the last queues it there.
void give_to_owner(StackSlot* s) noexcept;
// give_to_owner(inside) is give_to_owner() of the slot holding `inside`,
// if a region holds it.
void give_to_owner(void* inside) noexcept;

// release_slot(s, fiber) drops one holder (the fiber, or the task state)
// of slot s, from any thread; the last frees it.
inline void release_slot(StackSlot* s, bool fiber) noexcept {
  PoolCore* owner = PoolCore::class_of(s).core;
  if (owner == pool_thread.core) [[likely]] {
    owner->drop(s, fiber);
  } else {
    give_to_owner(s);
  }
}

// drop_spares() destroys every task type's spare on this thread: their
// stacks become cached ones.
void drop_spares() noexcept;

}  // namespace detail
}  // namespace fiberloop
