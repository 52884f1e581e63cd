// core.cpp: a pool's bookkeeping off the hot paths: size classes, carving
// slots from regions, giving pages back, unmapping idle regions.
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "pool_thread.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define FIBERLOOP_HAVE_MEMCHECK 1
#endif

namespace fiberloop {
namespace detail {
namespace {

// Regions double up to 256 MiB: a million default stacks then take a few
// thousand regions, within the table the overflow reporter searches.
constexpr std::size_t kMaxRegionBytes = std::size_t{256} << 20;
constexpr std::size_t kSlotsPerFullRegion =
    kMaxRegionBytes / (kDefaultStack + StackPool::kDefaultGuardSize);
static_assert(1'000'000 / kSlotsPerFullRegion < kMaxRegions,
              "a million default stacks fit in the region table");

long now_seconds() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec;
}

}  // namespace

bool memcheck_active() noexcept {
#ifdef FIBERLOOP_HAVE_MEMCHECK
  char probe = 0;
  return VALGRIND_MAKE_MEM_UNDEFINED(&probe, 1) != 0;
#else
  return false;
#endif
}

#if defined(__SANITIZE_ADDRESS__)
// Only shadow pages that are resident can hold poison; writing the others
// would commit an eighth of the stack.
void unpoison_stack(char* bottom, std::size_t size) noexcept {
  std::size_t scale = 0;
  std::size_t offset = 0;
  __asan_get_shadow_mapping(&scale, &offset);
  std::size_t page = page_size();
  std::uintptr_t lo = ((reinterpret_cast<std::uintptr_t>(bottom) >> scale) + offset) & ~(page - 1);
  std::uintptr_t hi = (reinterpret_cast<std::uintptr_t>(bottom + size) >> scale) + offset;
  unsigned char resident[256];
  for (std::uintptr_t chunk = lo; chunk < hi; chunk += sizeof(resident) * page) {
    std::size_t n = std::min<std::size_t>(sizeof(resident), (hi - chunk + page - 1) / page);
    if (::mincore(reinterpret_cast<void*>(chunk), n * page, resident) != 0) {
      ASAN_UNPOISON_MEMORY_REGION(bottom, size);
      return;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!(resident[i] & 1)) continue;
      auto* from = reinterpret_cast<char*>((chunk + i * page - offset) << scale);
      char* to = from + (page << scale);
      from = std::max(from, bottom);
      to = std::min(to, bottom + size);
      ASAN_UNPOISON_MEMORY_REGION(from, static_cast<std::size_t>(to - from));
    }
  }
}
#endif

}  // namespace detail

using detail::kCached;
using detail::kInUse;
using detail::kReleased;
using detail::kRetained;
using detail::kSpare;

StackPool::Core::SizeClass& StackPool::Core::class_for(std::size_t usable, std::size_t guard) {
  if (last_class && last_class->usable == usable && last_class->guard == guard)
    return *last_class;
  for (auto& c : classes) {
    if (c->usable == usable && c->guard == guard) return *(last_class = c.get());
  }
  classes.push_back(std::make_unique<SizeClass>(this, usable, guard));
  return *(last_class = classes.back().get());
}

StackPool::Core::SizeClass& StackPool::Core::class_for_local(std::size_t stack_size) {
  StackPool& pool = local();
  std::size_t usable = stack_size ? pool.checked(stack_size, "fiber stack") : pool.default_size_;
  Core::SizeClass& c = pool.core_->class_for(usable, pool.guard_size_);
  // Under memcheck every take must pass by undefine(): no shortcut then.
  if (!stack_size && !pool.core_->memcheck) detail::pool_thread.default_class = &c;
  return c;
}

detail::StackSlot* StackPool::Core::take(std::size_t usable, std::size_t guard) {
  return take_labelled(class_for(usable, guard), detail::StackLabel{});
}

detail::StackSlot* StackPool::Core::carve(SizeClass& c) {
  if (!c.carving || c.carving->carved == c.carving->count) {
    std::uint32_t count = c.next_count;
    StackRegion* r = detail::reserve_region(c.usable, c.guard, count, this);
    r->size_class = &c;
    regions.insert(std::upper_bound(regions.begin(), regions.end(), r,
                                    [](const StackRegion* a, const StackRegion* b) {
                                      return a->base < b->base;
                                    }),
                   r);
    c.carving = r;
    std::size_t cap = std::max<std::size_t>(1, detail::kMaxRegionBytes / (c.usable + c.guard));
    c.next_count = static_cast<std::uint32_t>(std::min<std::size_t>(cap, std::size_t{count} * 2));
  }
  StackRegion& r = *c.carving;
  detail::carve_slot(r, r.carved);
  StackSlot* s = &r.slots[r.carved];
  s->region = &r;
  s->top = r.top_of(r.carved++);
  s->size_class = &c;
  return s;
}

detail::StackSlot* StackPool::Core::take_cold(SizeClass& c) {
  StackSlot* s;
  if ((s = c.released.head)) {
    c.released.remove(s);
    --count[kReleased];
  } else {
    s = carve(c);
  }
  ++count[kInUse];
  s->state = kInUse;
  if (memcheck) undefine(s);
  return s;
}

void StackPool::Core::undefine(StackSlot* s) noexcept {
#ifdef FIBERLOOP_HAVE_MEMCHECK
  // memcheck marked what lay below the last fiber's stack pointer as gone;
  // a new owner (a task state at the top, or frames) may use all of it.
  std::size_t usable = class_of(s).usable;
  VALGRIND_MAKE_MEM_UNDEFINED(s->top - usable, usable);
#else
  (void)s;
#endif
}

void StackPool::Core::give_back(SizeClass& c, StackSlot* s) noexcept {
  unlink_cached(c, s);
  detail::give_back(*s->region, s->region->index_of(s));
  s->state = kReleased;
  c.released.push_front(s);
  ++count[kReleased];
}

void StackPool::Core::shrink_to(std::size_t n) noexcept {
  for (auto& c : classes) {
    while (count[kCached] > n && c->cached.tail) give_back(*c, c->cached.tail);
    if (count[kCached] > n && c->hot) give_back(*c, c->hot);
  }
}

void StackPool::Core::drain_remote() noexcept {
  StackSlot* s = remote.exchange(nullptr, std::memory_order_acquire);
  while (s) {
    StackSlot* next = s->next;
    put_back(s);
    s = next;
  }
}

void StackPool::Core::decay() noexcept {
  long now = detail::now_seconds();
  if (now == epoch_start) return;
  if (cached_low > watermark) shrink_to(count[kCached] - (cached_low - watermark));
  epoch_start = now;
  cached_low = count[kCached];
}

void StackPool::Core::unmap_idle() noexcept {
  std::vector<StackRegion*> keep;
  for (StackRegion* r : regions) {
    bool busy = false;
    for (std::uint32_t i = 0; i < r->carved && !busy; ++i)
      busy = r->slots[i].state == kInUse || r->slots[i].state == kRetained ||
             r->slots[i].state == kSpare;
    if (busy) {
      keep.push_back(r);
      continue;
    }
    SizeClass& c = class_of(*r);
    for (std::uint32_t i = 0; i < r->carved; ++i) {
      StackSlot* s = &r->slots[i];
      if (s->state == kCached) {
        unlink_cached(c, s);
      } else {
        c.released.remove(s);
        --count[kReleased];
      }
    }
    if (c.carving == r) c.carving = nullptr;
    detail::release_region(r);
  }
  regions.swap(keep);
}

}  // namespace fiberloop
