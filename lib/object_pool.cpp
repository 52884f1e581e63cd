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
constexpr std::size_t kMaxCachedPerClass = 4096;  // a burst does not pin its peak forever

struct FreeBlock {
  FreeBlock* next;
};

struct FreeLists {
  std::array<FreeBlock*, kClasses> head{};
  std::array<std::size_t, kClasses> count{};
  ~FreeLists() {
    for (FreeBlock* b : head) {
      while (b)
        ::operator delete (static_cast<void*>(std::exchange(b, b->next)),
                           std::align_val_t{kGranule});
    }
    destroyed = true;
  }
  static thread_local bool destroyed;
};
thread_local bool FreeLists::destroyed = false;
thread_local FreeLists lists;

std::size_t class_of(std::size_t size) { return (size + kGranule - 1) / kGranule - 1; }

}  // namespace

void* pool_allocate(std::size_t size) {
  std::size_t c = class_of(size);
  if (kBypass || c >= kClasses || FreeLists::destroyed) {
    return ::operator new (size, std::align_val_t{kGranule});
  }
  if (FreeBlock* b = lists.head[c]) {
    lists.head[c] = b->next;
    --lists.count[c];
    return b;
  }
  return ::operator new ((c + 1) * kGranule, std::align_val_t{kGranule});
}

void pool_deallocate(void* p, std::size_t size) noexcept {
  std::size_t c = class_of(size);
  if (kBypass || c >= kClasses || FreeLists::destroyed || lists.count[c] >= kMaxCachedPerClass) {
    ::operator delete (p, std::align_val_t{kGranule});
    return;
  }
  lists.head[c] = ::new (p) FreeBlock{lists.head[c]};
  ++lists.count[c];
}

}  // namespace fiberloop::detail
