// spares.cpp: finished task states kept on their stacks for the next task of
// their type, and the hooks that drop them when the pool can no longer keep them.
#include "pool_thread.hpp"

namespace fiberloop::detail {

bool keep_as_spare(StackSlot* s) noexcept {
  PoolCore::SizeClass* c = pool_thread.default_class;
  // Only this thread's pool can hand it out again, and only for the
  // default size (under memcheck default_class stays null: no spares).
  if (&PoolCore::class_of(s) != c) [[unlikely]]
    return false;
  FIBERLOOP_ASSERT(s->state == kRetained, "a spare's stack must be held by its state alone");
  s->state = kSpare;
  --c->core->count[kRetained];
  ++c->core->count[kSpare];
  return true;
}

void retake_spare_stack(StackSlot* s, std::uint64_t number) noexcept {
  PoolCore& core = *PoolCore::class_of(s).core;
  s->holders = 2;  // the state, and its next fiber
  s->state = kInUse;
  --core.count[kSpare];
  ++core.count[kInUse];
  s->number = number;
}

void register_spare_dropper(SpareDropper* dropper) noexcept {
  dropper->registered = true;
  dropper->next = pool_thread.spares;
  pool_thread.spares = dropper;
}

void drop_spares() noexcept {
  while (SpareDropper* d = pool_thread.spares) {
    pool_thread.spares = d->next;
    d->next = nullptr;
    d->registered = false;
    d->drop();
  }
}

}  // namespace fiberloop::detail
