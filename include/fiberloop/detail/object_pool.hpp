// detail/object_pool.hpp: per-thread free lists for the small objects the
// loop churns through (future, task and handle states), so that steady-state
// call_soon, timers and await make no heap allocation.
#pragma once

#include <cstddef>
#include <new>

#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// pool_allocate() returns memory for `size` bytes aligned to 16, recycled from
// this thread's free list of that size class when it can. Sanitizer builds
// bypass the lists so that ASan still sees every use after free.
FIBERLOOP_API void* pool_allocate(std::size_t size);
// pool_deallocate() returns memory from pool_allocate(size) (any thread).
FIBERLOOP_API void pool_deallocate(void* p, std::size_t size) noexcept;

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
