// detail/object_pool.hpp: per-thread free lists for the small objects the
// loop churns through (future, task and handle states), so that steady-state
// call_soon, timers and await make no heap allocation.
#pragma once

#include <cstddef>
#include <new>

#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// PoolLists is this thread's free lists, one per 16-byte size class. Only the
// fast paths live in this header (a pop when a list has a block, a push when
// it is under its cap); lib/object_pool.cpp owns every decision: caps start
// at zero and only its slow path raises them, so a sanitizer build (which
// bypasses the lists, that ASan still sees every use after free) and a
// thread that already tore its lists down never take a fast path.
struct PoolLists {
  static constexpr std::size_t kGranule = 16;
  static constexpr std::size_t kClasses = 64;  // blocks up to 1 KiB

  struct FreeBlock {
    FreeBlock* next;
  };

  FreeBlock* head[kClasses];
  std::size_t cached[kClasses];  // blocks in head's list
  std::size_t cap[kClasses];     // a push beyond it goes to the slow path

  static constexpr std::size_t class_of(std::size_t size) noexcept {
    return (size + kGranule - 1) / kGranule - 1;
  }
};

// pool_lists is trivially destructible and constant-initialized: reaching it
// needs no init guard, and initial-exec makes it one load from user code too.
FIBERLOOP_API extern constinit thread_local PoolLists pool_lists [[gnu::tls_model("initial-exec")]];

// pool_allocate_slow / pool_deallocate_slow: everything but the fast paths.
FIBERLOOP_API void* pool_allocate_slow(std::size_t size);
FIBERLOOP_API void pool_deallocate_slow(void* p, std::size_t size) noexcept;

// pool_allocate() returns memory for `size` bytes aligned to 16, recycled from
// this thread's free list of that size class when it can. Sanitizer builds
// bypass the lists so that ASan still sees every use after free.
inline void* pool_allocate(std::size_t size) {
  std::size_t c = PoolLists::class_of(size);
  if (c < PoolLists::kClasses) {
    PoolLists& l = pool_lists;
    if (PoolLists::FreeBlock* b = l.head[c]) {
      l.head[c] = b->next;
      --l.cached[c];
      return b;
    }
  }
  return pool_allocate_slow(size);
}

// pool_deallocate() returns memory from pool_allocate(size) (any thread).
inline void pool_deallocate(void* p, std::size_t size) noexcept {
  std::size_t c = PoolLists::class_of(size);
  if (c < PoolLists::kClasses) {
    PoolLists& l = pool_lists;
    if (l.cached[c] < l.cap[c]) {
      l.head[c] = ::new (p) PoolLists::FreeBlock{l.head[c]};
      ++l.cached[c];
      return;
    }
  }
  pool_deallocate_slow(p, size);
}

// Pooled gives a class pooled operator new/delete. With a virtual destructor
// the sized delete receives the dynamic size, so derived classes share it.
// An over-aligned derived class (a Future of an alignas(64) value) gets the
// aligned overloads instead: the free lists only promise 16 bytes, so those
// go to the global aligned allocator (rare, and never on the hot paths).
struct Pooled {
  static void* operator new(std::size_t size) { return pool_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { pool_deallocate(p, size); }
  static void* operator new(std::size_t size, std::align_val_t align) {
    return ::operator new(size, align);
  }
  static void operator delete(void* p, std::size_t size, std::align_val_t align) noexcept {
    ::operator delete(p, size, align);
  }
};

}  // namespace fiberloop::detail
