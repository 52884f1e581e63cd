#include "fiberloop/detail/object_pool.hpp"

#include <array>
#include <new>
#include <utility>

namespace fiberloop::detail {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kBypass = true;
#else
constexpr bool kBypass = false;
#endif

constexpr std::size_t kGranule = 16;
constexpr std::size_t kClasses = 64;  // blocks up to 1 KiB: a task state with a sizeable capture
// A class keeps up to this many free blocks, or as many as were ever live at
// once in it if that is more: a program that needs a burst of a million
// handles gets them from the list the next time, not from malloc.
constexpr std::size_t kMinCachedPerClass = 4096;

struct FreeBlock {
  FreeBlock* next;
};

// The free lists are trivially destructible, so reaching them on the hot
// path needs no thread-local init guard; a separate Reaper, created on a
// thread's first slow-path allocation, gives the blocks back at thread exit.
struct FreeLists {
  std::array<FreeBlock*, kClasses> head;
  std::array<std::size_t, kClasses> cached;
  std::array<std::size_t, kClasses> live;
  std::array<std::size_t, kClasses> peak_live;
  bool reaper_armed;
  bool destroyed;
};
constinit thread_local FreeLists lists{};

struct Reaper {
  ~Reaper() {
    for (FreeBlock* b : lists.head) {
      while (b)
        ::operator delete (static_cast<void*>(std::exchange(b, b->next)),
                           std::align_val_t{kGranule});
    }
    lists.head = {};
    lists.destroyed = true;
  }
};

void arm_reaper() {
  thread_local Reaper reaper;
  (void)reaper;
  lists.reaper_armed = true;
}

std::size_t class_of(std::size_t size) { return (size + kGranule - 1) / kGranule - 1; }

[[gnu::noinline]] void* allocate_new(std::size_t c) {
  if (!lists.reaper_armed) arm_reaper();
  if (++lists.live[c] > lists.peak_live[c]) lists.peak_live[c] = lists.live[c];
  return ::operator new ((c + 1) * kGranule, std::align_val_t{kGranule});
}

}  // namespace

void* pool_allocate(std::size_t size) {
  std::size_t c = class_of(size);
  if (kBypass || c >= kClasses || lists.destroyed) {
    return ::operator new (size, std::align_val_t{kGranule});
  }
  if (FreeBlock* b = lists.head[c]) {
    lists.head[c] = b->next;
    --lists.cached[c];
    ++lists.live[c];
    return b;
  }
  return allocate_new(c);
}

void pool_deallocate(void* p, std::size_t size) noexcept {
  std::size_t c = class_of(size);
  if (kBypass || c >= kClasses || lists.destroyed) {
    ::operator delete (p, std::align_val_t{kGranule});
    return;
  }
  // A block freed on another thread than the one that allocated it joins
  // this thread's list; the live counts are per thread, so clamp at zero.
  if (lists.live[c]) --lists.live[c];
  if (lists.cached[c] >= kMinCachedPerClass && lists.cached[c] >= lists.peak_live[c]) {
    ::operator delete (p, std::align_val_t{kGranule});
    return;
  }
  lists.head[c] = ::new (p) FreeBlock{lists.head[c]};
  ++lists.cached[c];
}

}  // namespace fiberloop::detail
