#include "fiberloop/stack.hpp"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <atomic>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "stack/stack_arena.hpp"
#include "stack/stack_overflow.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
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
// kSpare: a finished task's state at the top waits for the next task of its
// type (detail::keep_as_spare()); counted among the cached stacks.
enum SlotState : std::uint8_t { kInUse = 0, kCached = 1, kReleased = 2, kRetained = 3, kSpare = 4 };

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

struct PendingStack {
  boost::context::stack_context stack;
  StackSlot* slot = nullptr;  // null: none pending
};

// A placed task state keeps its slot's address in the top 8 bytes of its
// stack. Stack tops are page-aligned (multiples of 4 KiB), and the state
// starts less than 4 KiB below its top, or exactly 4 KiB below when so
// aligned: release_with_stack() finds the top from the state's address.
constexpr std::uintptr_t kTopAlign = 4096;
inline StackSlot*& link_below(std::uintptr_t top) noexcept {
  return *reinterpret_cast<StackSlot**>(top - sizeof(StackSlot*));
}
inline std::uintptr_t top_above(const void* state) noexcept {
  return (reinterpret_cast<std::uintptr_t>(state) | (kTopAlign - 1)) + 1;
}

void label_slot(StackSlot* s, const detail::StackLabel& label) noexcept {
  s->owner = label.number ? StackOwner::task : StackOwner::generator;
  s->name = label.name;
  s->number = label.number;
}

// SlotList is a doubly-linked list of free slots through their side-table
// entries; the head is the most recently freed.
struct SlotList {
  StackSlot* head = nullptr;
  StackSlot* tail = nullptr;

  void push_front(StackSlot* s) noexcept {
    s->prev = nullptr;
    s->next = head;
    (head ? head->prev : tail) = s;
    head = s;
  }
  void remove(StackSlot* s) noexcept {
    (s->prev ? s->prev->next : head) = s->next;
    (s->next ? s->next->prev : tail) = s->prev;
  }
  StackSlot* pop_front() noexcept {
    StackSlot* s = head;
    if (s) {
      head = s->next;
      (head ? head->prev : tail) = nullptr;
    }
    return s;
  }
};

// memcheck_active() is true when the program runs under valgrind's memcheck
// (the only tool that answers a MAKE_MEM_UNDEFINED request): elsewhere the
// request on every take would be a dozen instructions doing nothing.
bool memcheck_active() noexcept {
#ifdef FIBERLOOP_HAVE_MEMCHECK
  char probe = 0;
  return VALGRIND_MAKE_MEM_UNDEFINED(&probe, 1) != 0;
#else
  return false;
#endif
}

}  // namespace

// Core is a pool's state. It lives on the heap so that a stack freed on
// another thread, or after its thread ended, still finds it.
struct StackPool::Core {
  struct SizeClass {
    SizeClass(Core* o, std::size_t u, std::size_t g) noexcept : core(o), usable(u), guard(g) {}
    Core* core;
    std::size_t usable;
    std::size_t guard;
    StackRegion* carving = nullptr;  // the region with slots never handed out
    std::uint32_t next_count = kFirstRegionSlots;
    // Free slots keeping their pages, most recently freed first: `hot`,
    // then `cached` from head to tail. The hot slot stays off the list so
    // that a spawn after a finish (the common rhythm) links nothing.
    StackSlot* hot = nullptr;
    SlotList cached;
    SlotList released;  // free, pages given back
  };

  std::vector<std::unique_ptr<SizeClass>> classes;
  SizeClass* last_class = nullptr;
  const bool memcheck = memcheck_active();
  std::vector<StackRegion*> regions;  // sorted by base
  // Slots by SlotState over all size classes (so that a slot changing
  // state moves one count to another by its state byte alone): in use (a
  // fiber runs on it), cached (free, keeping its pages), released (free,
  // pages given back), retained (kept only for a finished task's state),
  // spare (a finished state kept for recycling).
  std::size_t count[5] = {};
  std::size_t watermark = 256;  // StackPool::max_cached()
  // Stacks freed by other threads, pushed lock-free, taken by the owner.
  std::atomic<StackSlot*> remote{nullptr};
  std::atomic<bool> orphaned{false};
  // Decay: free stacks beyond the watermark that stayed unused for a whole
  // epoch (a second) give their pages back.
  long epoch_start = 0;
  std::size_t cached_low = 0;  // fewest cached stacks seen this epoch

  std::size_t cached_total() const noexcept {
    return count[kCached] + count[kReleased] + count[kSpare];
  }

  // class_for_local(stack_size) is the size class of this thread's pool for
  // stack_size (0: its default), remembered as default_class for 0. Throws
  // as StackPool::allocate().
  [[gnu::noinline]] static SizeClass& class_for_local(std::size_t stack_size);

  SizeClass& class_for(std::size_t usable, std::size_t guard) {
    if (last_class && last_class->usable == usable && last_class->guard == guard)
      return *last_class;
    for (auto& c : classes) {
      if (c->usable == usable && c->guard == guard) return *(last_class = c.get());
    }
    classes.push_back(std::make_unique<SizeClass>(this, usable, guard));
    return *(last_class = classes.back().get());
  }

  StackRegion* region_of(const void* p) const noexcept {
    auto it = std::upper_bound(regions.begin(), regions.end(), p,
                               [](const void* a, const StackRegion* r) { return a < r->base; });
    if (it == regions.begin()) return nullptr;
    StackRegion* r = *(it - 1);
    return p < r->base + r->length ? r : nullptr;
  }

  static SizeClass& class_of(const StackRegion& r) noexcept {
    return *static_cast<SizeClass*>(r.size_class);
  }

  // carve() hands out a never-used slot, reserving a region if needed.
  StackSlot* carve(SizeClass& c) {
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
      std::size_t cap = std::max<std::size_t>(1, kMaxRegionBytes / (c.usable + c.guard));
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

  // take() hands out a slot of `usable` bytes under guards of `guard`,
  // labelled a Generator's, with one holder.
  StackSlot* take(std::size_t usable, std::size_t guard);

  // take_labelled(c, label) hands out a slot of class c with one holder.
  StackSlot* take_labelled(SizeClass& c, const detail::StackLabel& label) {
    StackSlot* s = take_from(c);
    s->holders = 1;
    label_slot(s, label);
    return s;
  }

  // take_from(c) hands out a slot of class c, the most recently freed
  // first; its holders and label are the caller's to set.
  StackSlot* take_from(SizeClass& c) {
    if (remote.load(std::memory_order_relaxed)) drain_remote();
    StackSlot* s = take_cached(c);
    if (!s) return take_cold(c);
    if (memcheck) undefine(s);
    return s;
  }

  // take_cached(c) hands out the most recently freed slot of class c that
  // kept its pages, or null if none did. It leaves memcheck to the caller.
  [[gnu::always_inline]] StackSlot* take_cached(SizeClass& c) noexcept {
    StackSlot* s = c.hot;
    if (s) [[likely]] {
      c.hot = nullptr;
    } else if (!(s = c.cached.pop_front())) {
      return nullptr;
    }
    if (--count[kCached] < cached_low) cached_low = count[kCached];
    ++count[kInUse];
    s->state = kInUse;
    return s;
  }

  // take_cold(c) hands out a slot whose pages were given back, or a new one.
  [[gnu::noinline]] StackSlot* take_cold(SizeClass& c) {
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

  [[gnu::noinline]] static void undefine(StackSlot* s) noexcept {
#ifdef FIBERLOOP_HAVE_MEMCHECK
    // memcheck marked what lay below the last fiber's stack pointer as gone;
    // a new owner (a task state at the top, or frames) may use all of it.
    std::size_t usable = class_of(s).usable;
    VALGRIND_MAKE_MEM_UNDEFINED(s->top - usable, usable);
#else
    (void)s;
#endif
  }

  static SizeClass& class_of(const StackSlot* s) noexcept {
    return *static_cast<SizeClass*>(s->size_class);
  }

  static boost::context::stack_context context_of(const StackSlot* s) noexcept {
    boost::context::stack_context sc;
    sc.sp = s->top;
    sc.size = class_of(s).usable;
    return sc;
  }

  // drop() takes one holder off slot s; the last puts it back.
  [[gnu::always_inline]] void drop(StackSlot* s, bool fiber) noexcept {
    if (--s->holders) {
      if (fiber) {  // the task's state outlives its fiber: the slot waits for it
        s->state = kRetained;
        --count[kInUse];
        ++count[kRetained];
      }
      return;
    }
#if defined(__SANITIZE_ADDRESS__)
    unpoison_stack(s->top - class_of(s).usable, class_of(s).usable);
#endif
    put_back(s);
    if (count[kCached] > watermark) [[unlikely]]
      decay();
  }

  // unlink_cached() takes cached slot s off its class's free slots.
  void unlink_cached(SizeClass& c, StackSlot* s) noexcept {
    if (c.hot == s) {
      c.hot = nullptr;
    } else {
      c.cached.remove(s);
    }
    --count[kCached];
  }

  void give_back(SizeClass& c, StackSlot* s) noexcept {
    unlink_cached(c, s);
    detail::give_back(*s->region, s->region->index_of(s));
    s->state = kReleased;
    c.released.push_front(s);
    ++count[kReleased];
  }

  // shrink_to(n) gives back the least recently used cached stacks until at
  // most n keep their pages.
  void shrink_to(std::size_t n) noexcept {
    for (auto& c : classes) {
      while (count[kCached] > n && c->cached.tail) give_back(*c, c->cached.tail);
      if (count[kCached] > n && c->hot) give_back(*c, c->hot);
    }
  }

  // put_back() makes slot s the most recently freed of its class. A free
  // slot is labelled a Generator's, so a task state placed on it later
  // needs only its task's label (take_fiber_stack()).
  [[gnu::always_inline]] void put_back(StackSlot* s) noexcept {
    --count[s->state];
    s->state = kCached;
    s->owner = StackOwner::generator;  // (its name is then never read)
    SizeClass& c = class_of(s);
    if (c.hot) c.cached.push_front(c.hot);
    c.hot = s;
    ++count[kCached];
  }

  [[gnu::noinline]] void drain_remote() noexcept {
    StackSlot* s = remote.exchange(nullptr, std::memory_order_acquire);
    while (s) {
      StackSlot* next = s->next;
      put_back(s);
      s = next;
    }
  }

  [[gnu::noinline]] void decay() noexcept {
    long now = now_seconds();
    if (now == epoch_start) return;
    if (cached_low > watermark) shrink_to(count[kCached] - (cached_low - watermark));
    epoch_start = now;
    cached_low = count[kCached];
  }

  // unmap_idle() unmaps every region none of whose stacks is in use.
  void unmap_idle() noexcept {
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
};

namespace {

// ThreadState is this thread's view of its pool, in one thread_local so
// that each hot path computes its address once.
struct ThreadState {
  // The pool and its core, while it lives: plain pointers, so that the hot
  // paths skip the thread_local object's initialisation guard.
  StackPool* pool = nullptr;
  StackPool::Core* core = nullptr;
  // The core's class for the pool's default size and guard, once asked for
  // (null again when either changes, and under memcheck): a spawn without a
  // stack size goes straight to it, skipping the checks and the search.
  StackPool::Core::SizeClass* default_class = nullptr;
  // The stack below a task state, for the fiber the state builds next.
  PendingStack pending_stack;
  // The task types with a spare hook registered on this thread.
  detail::SpareDropper* spares = nullptr;
};
constinit thread_local ThreadState this_thread{};

// drop_spares() destroys every task type's spare on this thread: their
// stacks become cached ones.
void drop_spares() noexcept {
  while (detail::SpareDropper* d = this_thread.spares) {
    this_thread.spares = d->next;
    d->next = nullptr;
    d->registered = false;
    d->drop();
  }
}

}  // namespace

StackSlot* StackPool::Core::take(std::size_t usable, std::size_t guard) {
  return take_labelled(class_for(usable, guard), detail::StackLabel{});
}

const std::size_t StackPool::kDefaultSize = kDefault;
const std::size_t StackPool::kMinSize = kMin;

StackPool& StackPool::local() {
  if (StackPool* pool = this_thread.pool) return *pool;
  return make_local();
}

StackPool& StackPool::make_local() {
  thread_local StackPool pool(true);
  return pool;
}

StackPool::StackPool() : StackPool(false) {}

StackPool::StackPool(bool local) : core_(new Core), default_size_(kDefaultSize), local_(local) {
  if (local) {
    // The thread whose pool this is runs its fibers: it needs the overflow
    // reporter's alternate signal stack.
    detail::enable_overflow_reports();
    this_thread.pool = this;
    this_thread.core = core_;
  }
}

StackPool::~StackPool() {
  if (local_) {
    drop_spares();  // while their frees still find this pool
    this_thread.pool = nullptr;
    this_thread.core = nullptr;  // later frees go to the orphaned core
    this_thread.default_class = nullptr;
  }
  core_->drain_remote();
  core_->shrink_to(0);
  core_->unmap_idle();
  if (core_->count[kInUse] || core_->count[kRetained]) {
    // A stack still running somewhere (a static Generator, one moved to
    // another thread), or holding a task state still referenced, keeps its
    // region and this core; both are leaked.
    core_->orphaned.store(true, std::memory_order_release);
#if defined(__SANITIZE_ADDRESS__)
    __lsan_ignore_object(core_);  // leaked on purpose (with what it holds)
#endif
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
  if (local_) {
    this_thread.default_class = nullptr;
    drop_spares();
  }
}

void StackPool::set_guard_size(std::size_t size) {
  if (size > kMaxSize) {
    throw std::invalid_argument("StackPool::set_guard_size: guard size " + std::to_string(size) +
                                " is above StackPool::kMaxSize (" + std::to_string(kMaxSize) +
                                " bytes)");
  }
  guard_size_ = std::max(round_to_pages(size), page_size());
  if (local_) {
    this_thread.default_class = nullptr;
    drop_spares();
  }
}

void StackPool::set_max_cached(std::size_t n) {
  max_cached_ = n;
  core_->watermark = n;
  core_->shrink_to(n);
}

std::size_t StackPool::cached() const noexcept { return core_->cached_total(); }
std::size_t StackPool::released() const noexcept { return core_->count[kReleased]; }
std::size_t StackPool::in_use() const noexcept { return core_->count[kInUse]; }
std::size_t StackPool::retained() const noexcept { return core_->count[kRetained]; }

boost::context::stack_context StackPool::allocate(std::size_t size) {
  std::size_t usable = size ? checked(size, "fiber stack") : default_size_;
  detail::enable_overflow_reports();
  return Core::context_of(core_->take(usable, guard_size_));
}

void StackPool::deallocate(boost::context::stack_context& sc) noexcept {
  release(static_cast<char*>(sc.sp) - 1, true);
}

void StackPool::release(void* inside, bool fiber) noexcept {
  StackRegion* r = core_->region_of(inside);
  if (!r) {
    give_to_owner(inside);
    return;
  }
  core_->drop(&r->slots[r->index_of_top(static_cast<char*>(inside) + 1)], fiber);
}

void StackPool::release_slot(StackSlot* s, bool fiber) noexcept {
  Core* owner = Core::class_of(s).core;
  if (owner == this_thread.core) [[likely]] {
    owner->drop(s, fiber);
  } else {
    give_to_owner(s);
  }
}

void StackPool::give_to_owner(void* inside) noexcept {
  StackRegion* r = detail::find_region(inside);
  if (r) give_to_owner(&r->slots[r->index_of_top(static_cast<char*>(inside) + 1)]);
}

void StackPool::give_to_owner(StackSlot* s) noexcept {
  StackRegion* r = s->region;
  auto* owner = static_cast<Core*>(r->pool);
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
  if (local_) drop_spares();
  core_->drain_remote();
  core_->shrink_to(0);
  core_->unmap_idle();
  core_->cached_low = 0;
}

StackPool::Core::SizeClass& StackPool::Core::class_for_local(std::size_t stack_size) {
  StackPool& pool = local();
  std::size_t usable = stack_size ? pool.checked(stack_size, "fiber stack") : pool.default_size_;
  Core::SizeClass& c = pool.core_->class_for(usable, pool.guard_size_);
  // Under memcheck every take must pass by undefine(): no shortcut then.
  if (!stack_size && !pool.core_->memcheck) this_thread.default_class = &c;
  return c;
}

namespace {

// local_class(stack_size) is the size class of this thread's pool that
// take_fiber_stack() and allocate_with_stack() take from. Throws as
// StackPool::allocate().
inline StackPool::Core::SizeClass& local_class(std::size_t stack_size) {
  StackPool::Core::SizeClass* c = this_thread.default_class;
  if (!stack_size && c) [[likely]]
    return *c;
  return StackPool::Core::class_for_local(stack_size);
}

}  // namespace

namespace detail {

void give_back_fiber_stack(StackSlot* slot) noexcept {
  // A stack released on another thread, or after this thread's pool died (a
  // static Generator), goes to its owner's remote list or orphaned core.
  StackPool::release_slot(slot, true);
}

namespace {

// take_stack_slow() is take_fiber_stack() without a placed task state: a
// Generator's stack, or any fiber's in sanitizer builds.
[[gnu::noinline]] FiberStack take_stack_slow(std::size_t size, StackLabel label) {
  StackPool::Core::SizeClass& c = local_class(size);
  StackSlot* s = c.core->take_labelled(c, label);
  return {StackPool::Core::context_of(s), s};
}

}  // namespace

FiberStack take_fiber_stack(std::size_t size, StackLabel label) {
  if (StackSlot* s = this_thread.pending_stack.slot) [[likely]] {
    // The stack below a task state placed by allocate_with_stack(): the
    // slot already counts the fiber as its second holder, and put_back()
    // left it labelled a Generator's.
    this_thread.pending_stack.slot = nullptr;
    if (label.number) label_slot(s, label);
    return {this_thread.pending_stack.stack, s};
  }
  return take_stack_slow(size, label);
}

namespace {

// place_state() puts a task state of `size` bytes at the top of slot s and
// leaves the rest of the stack pending for the state's fiber.
[[gnu::always_inline]] inline void* place_state(StackPool::Core::SizeClass& c, StackSlot* s,
                                                std::size_t size, std::size_t align) noexcept {
  s->holders = 2;  // the state, and the fiber it builds next
  auto top = reinterpret_cast<std::uintptr_t>(s->top);
  // 16 bytes above the state: the link to its slot, and 8 that keep the
  // state's end off the top.
  std::uintptr_t at = (top - size - 16) & ~(align - 1);
  link_below(top) = s;
  this_thread.pending_stack.stack.sp = reinterpret_cast<void*>(at);
  this_thread.pending_stack.stack.size = c.usable - (top - at);
  this_thread.pending_stack.slot = s;
  return reinterpret_cast<void*>(at);
}

[[gnu::noinline]] void* allocate_with_stack_slow(std::size_t size, std::size_t align,
                                                 std::size_t stack_size) {
  if (!placed_on_stack(size, align))
    return ::operator new (size, std::align_val_t{std::max<std::size_t>(align, 16)});
  StackPool::Core::SizeClass& c = local_class(stack_size);
  return place_state(c, c.core->take_from(c), size, std::max<std::size_t>(align, 16));
}

}  // namespace

void* allocate_with_stack(std::size_t size, std::size_t align, std::size_t stack_size) {
  // The common spawn: the default size, a stack freed before. Nothing on
  // this path calls out, so it saves no registers.
  StackPool::Core::SizeClass* c = this_thread.default_class;
  StackSlot* s;
  if (!kPlaceStates || size > kMaxPlacedState || align > 16 || stack_size || !c ||
      c->core->remote.load(std::memory_order_relaxed) || !(s = c->core->take_cached(*c)))
      [[unlikely]]
    return allocate_with_stack_slow(size, align, stack_size);
  return place_state(*c, s, size, 16);
}

bool keep_as_spare(StackSlot* s) noexcept {
  StackPool::Core::SizeClass* c = this_thread.default_class;
  // Only this thread's pool can hand it out again, and only for the
  // default size (under memcheck default_class stays null: no spares).
  if (&StackPool::Core::class_of(s) != c) [[unlikely]]
    return false;
  assert(s->state == kRetained);  // the state holds it, its fiber has ended
  s->state = kSpare;
  --c->core->count[kRetained];
  ++c->core->count[kSpare];
  return true;
}

void retake_spare_stack(StackSlot* s, std::uint64_t number) noexcept {
  StackPool::Core& core = *StackPool::Core::class_of(s).core;
  s->holders = 2;  // the state, and its next fiber
  s->state = kInUse;
  --core.count[kSpare];
  ++core.count[kInUse];
  s->number = number;
}

void register_spare_dropper(SpareDropper* dropper) noexcept {
  dropper->registered = true;
  dropper->next = this_thread.spares;
  this_thread.spares = dropper;
}

void release_with_stack(void* p, std::size_t size, std::size_t align) noexcept {
  if (!placed_on_stack(size, align)) {
    ::operator delete (p, std::align_val_t{std::max<std::size_t>(align, 16)});
    return;
  }
  StackSlot* s = link_below(top_above(p));
  if (this_thread.pending_stack.slot == s) [[unlikely]] {
    // The constructor threw before its fiber took the stack below: the
    // fiber's hold goes with it.
    this_thread.pending_stack.slot = nullptr;
    --s->holders;
  }
  StackPool::release_slot(s, false);
}

}  // namespace detail

}  // namespace fiberloop
