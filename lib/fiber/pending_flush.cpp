// pending_flush.cpp: the writes a fiber coalesces, flushed before it waits.
#include "fiberloop/detail/pending_flush.hpp"

#include "fiber_tls.hpp"

namespace fiberloop::detail {

void queue_flush(PendingFlush* f) noexcept {
  if (f->queued) return;
  f->queued = true;
  f->next = nullptr;
  f->prev = fiber_thread.flushes_tail;
  if (f->prev) {
    f->prev->next = f;
  } else {
    fiber_thread.flushes_head = f;
  }
  fiber_thread.flushes_tail = f;
  fiber_thread.flushes_queued = 1;
}

void unqueue_flush(PendingFlush* f) noexcept {
  if (!f->queued) return;
  f->queued = false;
  (f->prev ? f->prev->next : fiber_thread.flushes_head) = f->next;
  (f->next ? f->next->prev : fiber_thread.flushes_tail) = f->prev;
  f->prev = f->next = nullptr;
  fiber_thread.flushes_queued = fiber_thread.flushes_head != nullptr;
}

void run_pending_flushes() noexcept {
  // One pass over what is queued now: a node that queues itself again (or
  // another) while it runs waits for the next check.
  PendingFlush* last = fiber_thread.flushes_tail;
  while (PendingFlush* f = fiber_thread.flushes_head) {
    unqueue_flush(f);
    f->run(f);
    if (f == last) break;
  }
}

}  // namespace fiberloop::detail
