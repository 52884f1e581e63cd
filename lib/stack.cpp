#include "fiberloop/stack.hpp"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "stack_arena.hpp"
#include "stack_overflow.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define FIBERLOOP_HAVE_MEMCHECK 1
#endif

namespace fiberloop {
namespace {

using detail::StackOwner;
using detail::StackRegion;
using detail::StackSlot;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr std::size_t kDefault = 1024 * 1024;
constexpr std::size_t kMin = 64 * 1024;
#else
constexpr std::size_t kDefault = 512 * 1024;
constexpr std::size_t kMin = 16 * 1024;
#endif

// Regions start small (a program with a few tasks reserves little) and
// double up to 256 MiB, so a million stacks need about a thousand regions.
constexpr std::uint32_t kFirstRegionSlots = 16;
constexpr std::size_t kMaxRegionBytes = std::size_t{256} << 20;

// kRetained: the fiber ended, a finished task's state at the top still lives.
enum SlotState : std::uint8_t { kInUse = 0, kCached = 1, kReleased = 2, kRetained = 3 };

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_to_pages(std::size_t n) noexcept {
  std::size_t p = page_size();
  return (n + p - 1) / p * p;
}

#if defined(__SANITIZE_ADDRESS__)
// unpoison_stack() clears what ASan's shadow says of a freed stack: a fiber
// that threw or was unwound may leave redzone poison behind, and the next
// fiber on this stack must start clean. Only shadow pages that are resident
// can hold poison; writing the others would commit an eighth of the stack.
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

long now_seconds() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec;
}

// The label the next allocate() gives its slot (set by a task being built).
struct PendingLabel {
  const std::string* name = nullptr;
  std::uint64_t number = 0;
  bool set = false;
};
thread_local PendingLabel pending_label;
thread_local bool pool_destroyed = false;

// The stack below a task state, for the fiber the state builds next.
struct PendingStack {
  boost::context::stack_context stack;
  bool set = false;
};
thread_local PendingStack pending_stack;

// A task state up to this size lives at the top of its own stack: a parked
// task then touches one page, not a page and a heap block. Larger states
// (big captures or results) would push the frames onto a second page.
constexpr std::size_t kMaxPlacedState = 1024;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kPlaceStates = false;  // ASan must see task states as heap blocks
#else
constexpr bool kPlaceStates = true;
#endif

void label_slot(StackSlot* s, const PendingLabel& label) noexcept {
  s->owner = label.set ? StackOwner::task : StackOwner::generator;
  s->name = label.name;
  s->number = label.number;
}

// SlotList is a doubly-linked list of free slots through their side-table
// entries; the head is the most recently freed.
struct SlotList {
  StackSlot* head = nullptr;
  StackSlot* tail = nullptr;
  std::size_t size = 0;

  void push_front(StackSlot* s) noexcept {
    s->prev = nullptr;
    s->next = head;
    (head ? head->prev : tail) = s;
    head = s;
    ++size;
  }
  void remove(StackSlot* s) noexcept {
    (s->prev ? s->prev->next : head) = s->next;
    (s->next ? s->next->prev : tail) = s->prev;
    --size;
  }
};

}  // namespace

// Core is a pool's state. It lives on the heap so that a stack freed on
// another thread, or after its thread ended, still finds it.
struct StackPool::Core {
  struct SizeClass {
    SizeClass(std::size_t u, std::size_t g) noexcept : usable(u), guard(g) {}
    std::size_t usable;
    std::size_t guard;
    StackRegion* carving = nullptr;  // the region with slots never handed out
    std::uint32_t next_count = kFirstRegionSlots;
    SlotList cached;    // free, pages kept
    SlotList released;  // free, pages given back
  };

  std::vector<std::unique_ptr<SizeClass>> classes;
  SizeClass* last_class = nullptr;
  std::vector<StackRegion*> regions;  // sorted by base
  std::size_t in_use = 0;             // slots a fiber runs on
  std::size_t retained = 0;           // slots kept only for a finished task's state
  // Stacks freed by other threads, pushed lock-free, taken by the owner.
  std::atomic<StackSlot*> remote{nullptr};
  std::atomic<bool> orphaned{false};
  // Decay: free stacks beyond the watermark that stayed unused for a whole
  // epoch (a second) give their pages back.
  long epoch_start = 0;
  std::size_t cached_low = 0;  // fewest cached stacks seen this epoch

  std::size_t cached_total() const noexcept {
    std::size_t n = 0;
    for (auto& c : classes) n += c->cached.size + c->released.size;
    return n;
  }
  std::size_t released_total() const noexcept {
    std::size_t n = 0;
    for (auto& c : classes) n += c->released.size;
    return n;
  }
  std::size_t kept_total() const noexcept { return cached_total() - released_total(); }

  SizeClass& class_for(std::size_t usable, std::size_t guard) {
    if (last_class && last_class->usable == usable && last_class->guard == guard)
      return *last_class;
    for (auto& c : classes) {
      if (c->usable == usable && c->guard == guard) return *(last_class = c.get());
    }
    classes.push_back(std::make_unique<SizeClass>(usable, guard));
    return *(last_class = classes.back().get());
  }

  StackRegion* region_of(const void* p) const noexcept {
    auto it = std::upper_bound(regions.begin(), regions.end(), p,
                               [](const void* a, const StackRegion* r) { return a < r->base; });
    if (it == regions.begin()) return nullptr;
    StackRegion* r = *(it - 1);
    return p < r->base + r->length ? r : nullptr;
  }

  SizeClass& class_of(const StackRegion& r) { return class_for(r.usable, r.guard); }

  // carve() hands out a never-used slot, reserving a region if needed.
  StackSlot* carve(SizeClass& c) {
    if (!c.carving || c.carving->carved == c.carving->count) {
      std::uint32_t count = c.next_count;
      StackRegion* r = detail::reserve_region(c.usable, c.guard, count, this);
      regions.insert(std::upper_bound(regions.begin(), regions.end(), r,
                                      [](const StackRegion* a, const StackRegion* b) {
                                        return a->base < b->base;
                                      }),
                     r);
      c.carving = r;
      std::size_t cap = std::max<std::size_t>(1, kMaxRegionBytes / (c.usable + c.guard));
      c.next_count = static_cast<std::uint32_t>(std::min<std::size_t>(cap, std::size_t{count} * 2));
    }
    StackRegion& r = *c.carving;
    detail::carve_slot(r, r.carved);
    StackSlot* s = &r.slots[r.carved++];
    s->region = &r;
    return s;
  }

  void give_back(SizeClass& c, StackSlot* s) noexcept {
    c.cached.remove(s);
    detail::give_back(*s->region, s->region->index_of(s));
    s->state = kReleased;
    c.released.push_front(s);
  }

  // shrink_to(n) gives back the least recently used cached stacks until at
  // most n keep their pages.
  void shrink_to(std::size_t n) noexcept {
    std::size_t kept = kept_total();
    for (auto& c : classes) {
      while (kept > n && c->cached.tail) {
        give_back(*c, c->cached.tail);
        --kept;
      }
    }
  }

  void put_back(StackSlot* s) noexcept {
    StackRegion& r = *s->region;
    --r.in_use;
    --(s->state == kRetained ? retained : in_use);
    s->state = kCached;
    s->name = nullptr;
    class_of(r).cached.push_front(s);
  }

  void drain_remote() noexcept {
    StackSlot* s = remote.exchange(nullptr, std::memory_order_acquire);
    while (s) {
      StackSlot* next = s->next;
      put_back(s);
      s = next;
    }
  }

  void decay(std::size_t watermark) noexcept {
    long now = now_seconds();
    if (now == epoch_start) return;
    if (cached_low > watermark) shrink_to(kept_total() - (cached_low - watermark));
    epoch_start = now;
    cached_low = kept_total();
  }

  // unmap_idle() unmaps every region none of whose stacks is in use.
  void unmap_idle() noexcept {
    std::vector<StackRegion*> keep;
    for (StackRegion* r : regions) {
      if (r->in_use) {
        keep.push_back(r);
        continue;
      }
      SizeClass& c = class_of(*r);
      for (std::uint32_t i = 0; i < r->carved; ++i) {
        StackSlot* s = &r->slots[i];
        (s->state == kCached ? c.cached : c.released).remove(s);
      }
      if (c.carving == r) c.carving = nullptr;
      detail::release_region(r);
    }
    regions.swap(keep);
  }
};

const std::size_t StackPool::kDefaultSize = kDefault;
const std::size_t StackPool::kMinSize = kMin;

StackPool& StackPool::local() {
  thread_local StackPool pool(true);
  return pool;
}

StackPool::StackPool() : StackPool(false) {}

StackPool::StackPool(bool local) : core_(new Core), default_size_(kDefaultSize), local_(local) {}

StackPool::~StackPool() {
  if (local_) pool_destroyed = true;
  core_->drain_remote();
  core_->shrink_to(0);
  core_->unmap_idle();
  if (core_->in_use || core_->retained) {
    // A stack still running somewhere (a static Generator, one moved to
    // another thread), or holding a task state still referenced, keeps its
    // region and this core; both are leaked.
    core_->orphaned.store(true, std::memory_order_release);
    return;
  }
  delete core_;
}

const char* StackPool::guard_kind() noexcept {
  return detail::guard_mode() == detail::GuardMode::madvise_guard ? "madvise" : "mprotect";
}

std::size_t StackPool::checked(std::size_t size, const char* who) const {
  if (size < kMinSize) {
    throw std::invalid_argument(std::string(who) + ": fiber stack size " + std::to_string(size) +
                                " is below StackPool::kMinSize (" + std::to_string(kMinSize) +
                                " bytes), too small to run a task");
  }
  if (size > kMaxSize) {
    throw std::invalid_argument(std::string(who) + ": fiber stack size " + std::to_string(size) +
                                " is above StackPool::kMaxSize (" + std::to_string(kMaxSize) +
                                " bytes)");
  }
  return round_to_pages(size);
}

void StackPool::set_default_size(std::size_t size) {
  default_size_ = checked(size, "StackPool::set_default_size");
}

void StackPool::set_guard_size(std::size_t size) {
  if (size > kMaxSize) {
    throw std::invalid_argument("StackPool::set_guard_size: guard size " + std::to_string(size) +
                                " is above StackPool::kMaxSize (" + std::to_string(kMaxSize) +
                                " bytes)");
  }
  guard_size_ = std::max(round_to_pages(size), page_size());
}

void StackPool::set_max_cached(std::size_t n) {
  max_cached_ = n;
  core_->shrink_to(n);
}

std::size_t StackPool::cached() const noexcept { return core_->cached_total(); }
std::size_t StackPool::released() const noexcept { return core_->released_total(); }
std::size_t StackPool::in_use() const noexcept { return core_->in_use; }
std::size_t StackPool::retained() const noexcept { return core_->retained; }

boost::context::stack_context StackPool::allocate(std::size_t size) {
  PendingLabel label = std::exchange(pending_label, PendingLabel{});
  if (pending_stack.set) {
    // The stack below a task state placed by allocate_with_stack().
    boost::context::stack_context sc = std::exchange(pending_stack, PendingStack{}).stack;
    StackRegion* r = core_->region_of(static_cast<char*>(sc.sp) - 1);
    StackSlot* s = &r->slots[r->index_of_top(sc.sp)];
    s->holders = 2;
    label_slot(s, label);
    return sc;
  }
  std::size_t usable = size ? checked(size, "fiber stack") : default_size_;
  detail::enable_overflow_reports();
  Core& core = *core_;
  if (core.remote.load(std::memory_order_relaxed)) core.drain_remote();
  Core::SizeClass& c = core.class_for(usable, guard_size_);
  StackSlot* s;
  if ((s = c.cached.head)) {
    c.cached.remove(s);
    std::size_t kept = core.kept_total();
    if (kept < core.cached_low) core.cached_low = kept;
  } else if ((s = c.released.head)) {
    c.released.remove(s);
  } else {
    s = core.carve(c);
  }
  StackRegion& r = *s->region;
  ++r.in_use;
  ++core.in_use;
  s->state = kInUse;
  s->holders = 1;
  label_slot(s, label);
  boost::context::stack_context sc;
  sc.sp = r.top_of(r.index_of(s));
  sc.size = usable;
#ifdef FIBERLOOP_HAVE_MEMCHECK
  // memcheck marked what lay below the last fiber's stack pointer as gone;
  // a new owner (a task state at the top, or frames) may use all of it.
  VALGRIND_MAKE_MEM_UNDEFINED(r.bottom_of(r.index_of(s)), usable);
#endif
  return sc;
}

void StackPool::deallocate(boost::context::stack_context& sc) noexcept {
  release(static_cast<char*>(sc.sp) - 1, true);
}

void StackPool::release(void* inside, bool fiber) noexcept {
  Core& core = *core_;
  StackRegion* r = core.region_of(inside);
  if (!r) {
    give_to_owner(inside);
    return;
  }
  std::uint32_t i = r->index_of_top(static_cast<char*>(inside) + 1);
  StackSlot* s = &r->slots[i];
  if (--s->holders) {
    if (fiber) {  // the task's state outlives its fiber: the slot waits for it
      s->state = kRetained;
      --core.in_use;
      ++core.retained;
    }
    return;
  }
#if defined(__SANITIZE_ADDRESS__)
  unpoison_stack(r->bottom_of(i), r->usable);
#endif
  core.put_back(s);
  if (core.kept_total() > max_cached_) core.decay(max_cached_);
}

void StackPool::give_to_owner(void* inside) noexcept {
  StackRegion* r = detail::find_region(inside);
  if (!r) return;
  auto* owner = static_cast<Core*>(r->pool);
  StackSlot* s = &r->slots[r->index_of_top(static_cast<char*>(inside) + 1)];
  if (--s->holders) return;
  if (owner->orphaned.load(std::memory_order_acquire)) {
    detail::give_back(*r, r->index_of(s));
    return;
  }
  s->next = owner->remote.load(std::memory_order_relaxed);
  while (!owner->remote.compare_exchange_weak(s->next, s, std::memory_order_release,
                                              std::memory_order_relaxed)) {
  }
}

void StackPool::trim() noexcept {
  core_->drain_remote();
  core_->shrink_to(0);
  core_->unmap_idle();
  core_->cached_low = 0;
}

void PooledStack::deallocate(boost::context::stack_context& sc) noexcept {
  // A stack released after this thread's pool died (a static Generator)
  // goes to its orphaned core.
  if (pool_destroyed) {
    StackPool::give_to_owner(static_cast<char*>(sc.sp) - 1);
    return;
  }
  StackPool::local().deallocate(sc);
}

namespace detail {

void* allocate_with_stack(std::size_t size, std::size_t align, std::size_t stack_size) {
  align = std::max<std::size_t>(align, 16);
  if (!kPlaceStates || size > kMaxPlacedState)
    return ::operator new (size, std::align_val_t{align});
  boost::context::stack_context sc = StackPool::local().allocate(stack_size);
  auto top = reinterpret_cast<std::uintptr_t>(sc.sp);
  std::uintptr_t at = (top - size) & ~(align - 1);
  boost::context::stack_context below;
  below.sp = reinterpret_cast<void*>(at);
  below.size = sc.size - (top - at);
  pending_stack = {below, true};
  return reinterpret_cast<void*>(at);
}

void release_with_stack(void* p, std::size_t size, std::size_t align) noexcept {
  align = std::max<std::size_t>(align, 16);
  if (!kPlaceStates || size > kMaxPlacedState) {
    ::operator delete (p, std::align_val_t{align});
    return;
  }
  // The constructor threw before its fiber took the stack below.
  if (pending_stack.set && pending_stack.stack.sp == p) pending_stack = {};
  if (pool_destroyed) {
    StackPool::give_to_owner(p);
    return;
  }
  StackPool::local().release(p, false);
}

void label_next_stack(const std::string* name, std::uint64_t number) noexcept {
  pending_label = {name, number, true};
}
}  // namespace detail

}  // namespace fiberloop
