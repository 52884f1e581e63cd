#include "fiberloop/detail/object_pool.hpp"

#include <algorithm>
#include <utility>

namespace fiberloop::detail {

constinit thread_local PoolLists pool_lists{};

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kBypass = true;
#else
constexpr bool kBypass = false;
#endif

using FreeBlock = PoolLists::FreeBlock;
constexpr std::size_t kGranule = PoolLists::kGranule;
constexpr std::size_t kClasses = PoolLists::kClasses;
// A class keeps up to this many free blocks, or as many as it ever took from
// the heap if that is more: a program that needs a burst of a million
// handles gets them from the list the next time, not from malloc.
constexpr std::size_t kMinCachedPerClass = 4096;

// The slow path's bookkeeping, beside the lists so that the fast paths stay
// two loads and two stores. owned[c] counts the blocks of class c taken from
// the heap (minus those given back): every block a thread's program held at
// once was owned, so a cap of max(kMinCachedPerClass, owned) never sends a
// block of a steady-state burst back to malloc.
struct SlowState {
  std::size_t owned[kClasses];
  bool reaper_armed;
  bool destroyed;
};
constinit thread_local SlowState slow{};

// The lists are trivially destructible, so reaching them on the hot path
// needs no thread-local init guard; a separate Reaper, created on a thread's
// first slow-path allocation, gives the blocks back at thread exit.
struct Reaper {
  ~Reaper() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      FreeBlock* b = pool_lists.head[c];
      while (b)
        ::operator delete (static_cast<void*>(std::exchange(b, b->next)),
                           std::align_val_t{kGranule});
      pool_lists.head[c] = nullptr;
      pool_lists.cached[c] = 0;
      pool_lists.cap[c] = 0;  // later frees (other thread-locals' destructors) go to the heap
    }
    slow.destroyed = true;
  }
};

void arm_reaper() {
  thread_local Reaper reaper;
  (void)reaper;
  slow.reaper_armed = true;
}

bool bypass(std::size_t c) { return kBypass || c >= kClasses || slow.destroyed; }

void raise_cap(std::size_t c) { pool_lists.cap[c] = std::max(kMinCachedPerClass, slow.owned[c]); }

}  // namespace

void* pool_allocate_slow(std::size_t size) {
  std::size_t c = PoolLists::class_of(size);
  if (bypass(c)) return ::operator new (size, std::align_val_t{kGranule});
  // The inline fast path found the list empty.
  if (!slow.reaper_armed) arm_reaper();
  ++slow.owned[c];
  raise_cap(c);
  return ::operator new ((c + 1) * kGranule, std::align_val_t{kGranule});
}

void pool_deallocate_slow(void* p, std::size_t size) noexcept {
  std::size_t c = PoolLists::class_of(size);
  if (bypass(c)) {
    ::operator delete (p, std::align_val_t{kGranule});
    return;
  }
  if (pool_lists.cap[c] == 0) {  // a thread that only frees (blocks from another thread)
    if (!slow.reaper_armed) arm_reaper();
    raise_cap(c);
  }
  if (pool_lists.cached[c] < pool_lists.cap[c]) {
    pool_lists.head[c] = ::new (p) FreeBlock{pool_lists.head[c]};
    ++pool_lists.cached[c];
    return;
  }
  ::operator delete (p, std::align_val_t{kGranule});
  if (slow.owned[c]) --slow.owned[c];  // blocks freed here may come from another thread
}

}  // namespace fiberloop::detail
