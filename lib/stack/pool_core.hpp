// pool_core.hpp (private): a pool's state (StackPool::Core) and its free
// lists, which the files of lib/stack/ share. The hot paths are inline here
// so that each file that takes or gives back a stack has them at hand.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "fiberloop/detail/stack_placement.hpp"
#include "fiberloop/stack.hpp"
#include "fiberloop/detail/assert.hpp"
#include "stack_arena.hpp"

namespace fiberloop {
namespace detail {

// StackPoolAccess is StackPool's one friend: through it the stack layer's
// own files name a pool's core.
struct StackPoolAccess {
  using Core = StackPool::Core;
};
using PoolCore = StackPoolAccess::Core;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr std::size_t kDefaultStack = 1024 * 1024;
inline constexpr std::size_t kMinStack = 64 * 1024;
#else
inline constexpr std::size_t kDefaultStack = 512 * 1024;
inline constexpr std::size_t kMinStack = 16 * 1024;
#endif

// Regions start small (a program with a few tasks reserves little) and
// double up to kMaxRegionBytes (core.cpp).
inline constexpr std::uint32_t kFirstRegionSlots = 16;

// kRetained: the fiber ended, a finished task's state at the top still lives.
// kSpare: a finished task's state at the top waits for the next task of its
// type (keep_as_spare()); counted among the cached stacks.
enum SlotState : std::uint8_t { kInUse = 0, kCached = 1, kReleased = 2, kRetained = 3, kSpare = 4 };
inline constexpr std::size_t kSlotStates = kSpare + 1;

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

inline std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

inline std::size_t round_to_pages(std::size_t n) noexcept {
  std::size_t p = page_size();
  return (n + p - 1) / p * p;
}

inline void label_slot(StackSlot* s, const StackLabel& label) noexcept {
  s->owner = label.number ? StackOwner::task : StackOwner::generator;
  s->name = label.name;
  s->number = label.number;
}

// memcheck_active() is true when the program runs under valgrind's memcheck
// (the only tool that answers a MAKE_MEM_UNDEFINED request), so that
// elsewhere no take pays for a request nobody hears.
bool memcheck_active() noexcept;
#if defined(__SANITIZE_ADDRESS__)
// unpoison_stack() clears what ASan's shadow says of a freed stack: a fiber
// that threw or was unwound may leave redzone poison behind, and the next
// fiber on this stack must start clean.
void unpoison_stack(char* bottom, std::size_t size) noexcept;
#endif

}  // namespace detail

// Core is a pool's state. It lives on the heap so that a stack freed on
// another thread, or after its thread ended, still finds it. What runs on
// every spawn or finish is inline here; the rest is in core.cpp.
struct StackPool::Core {
  using StackRegion = detail::StackRegion;
  using StackSlot = detail::StackSlot;
  using SlotList = detail::SlotList;

  struct SizeClass {
    SizeClass(Core* o, std::size_t u, std::size_t g) noexcept : core(o), usable(u), guard(g) {}
    Core* core;
    std::size_t usable;
    std::size_t guard;
    StackRegion* carving = nullptr;  // the region with slots never handed out
    std::uint32_t next_count = detail::kFirstRegionSlots;
    // Free slots keeping their pages, most recently freed first: `hot`,
    // then `cached` from head to tail. The hot slot stays off the list so
    // that a spawn after a finish (the common rhythm) links nothing.
    StackSlot* hot = nullptr;
    SlotList cached;
    SlotList released;  // free, pages given back
  };

  std::vector<std::unique_ptr<SizeClass>> classes;
  SizeClass* last_class = nullptr;
  const bool memcheck = detail::memcheck_active();
  std::vector<StackRegion*> regions;  // sorted by base
  // Slots by SlotState over all size classes (so that a slot changing
  // state moves one count to another by its state byte alone): in use (a
  // fiber runs on it), cached (free, keeping its pages), released (free,
  // pages given back), retained (kept only for a finished task's state),
  // spare (a finished state kept for recycling).
  std::size_t count[detail::kSlotStates] = {};
  std::size_t watermark = 256;  // StackPool::max_cached()
  // Stacks freed by other threads, pushed lock-free, taken by the owner.
  std::atomic<StackSlot*> remote{nullptr};
  std::atomic<bool> orphaned{false};
  // Decay: free stacks beyond the watermark that stayed unused for a whole
  // epoch (a second) give their pages back.
  long epoch_start = 0;
  std::size_t cached_low = 0;  // fewest cached stacks seen this epoch

  std::size_t cached_total() const noexcept {
    return count[detail::kCached] + count[detail::kReleased] + count[detail::kSpare];
  }

  // class_for_local(stack_size) is the size class of this thread's pool for
  // stack_size (0: its default), remembered as default_class for 0. Throws
  // as StackPool::allocate().
  [[gnu::noinline]] static SizeClass& class_for_local(std::size_t stack_size);
  SizeClass& class_for(std::size_t usable, std::size_t guard);

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
  static SizeClass& class_of(const StackSlot* s) noexcept {
    return *static_cast<SizeClass*>(s->size_class);
  }

  static boost::context::stack_context context_of(const StackSlot* s) noexcept {
    boost::context::stack_context sc;
    sc.sp = s->top;
    sc.size = class_of(s).usable;
    return sc;
  }

  // take() hands out a slot of `usable` bytes under guards of `guard`,
  // labelled a Generator's, with one holder.
  StackSlot* take(std::size_t usable, std::size_t guard);

  // take_labelled(c, label) hands out a slot of class c with one holder.
  StackSlot* take_labelled(SizeClass& c, const detail::StackLabel& label) {
    StackSlot* s = take_from(c);
    s->holders = 1;
    detail::label_slot(s, label);
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
    if (--count[detail::kCached] < cached_low) cached_low = count[detail::kCached];
    ++count[detail::kInUse];
    s->state = detail::kInUse;
    return s;
  }

  // take_cold(c) hands out a slot whose pages were given back, or a new one.
  [[gnu::noinline]] StackSlot* take_cold(SizeClass& c);
  // carve() hands out a never-used slot, reserving a region if needed.
  StackSlot* carve(SizeClass& c);
  // undefine() tells memcheck that a new owner may use all of slot s.
  [[gnu::noinline]] static void undefine(StackSlot* s) noexcept;

  // drop() takes one holder off slot s; the last puts it back.
  [[gnu::always_inline]] void drop(StackSlot* s, bool fiber) noexcept {
    FIBERLOOP_ASSERT(s->holders > 0, "a stack slot given back more often than it was taken");
    if (--s->holders) {
      if (fiber) {  // the task's state outlives its fiber: the slot waits for it
        s->state = detail::kRetained;
        --count[detail::kInUse];
        ++count[detail::kRetained];
      }
      return;
    }
#if defined(__SANITIZE_ADDRESS__)
    detail::unpoison_stack(s->top - class_of(s).usable, class_of(s).usable);
#endif
    put_back(s);
    if (count[detail::kCached] > watermark) [[unlikely]]
      decay();
  }

  // put_back() makes slot s the most recently freed of its class. A free
  // slot is labelled a Generator's, so a task state placed on it later
  // needs only its task's label.
  [[gnu::always_inline]] void put_back(StackSlot* s) noexcept {
    --count[s->state];
    s->state = detail::kCached;
    s->owner = detail::StackOwner::generator;  // (its name is then never read)
    SizeClass& c = class_of(s);
    if (c.hot) c.cached.push_front(c.hot);
    c.hot = s;
    ++count[detail::kCached];
  }

  // unlink_cached() takes cached slot s off its class's free slots.
  void unlink_cached(SizeClass& c, StackSlot* s) noexcept {
    if (c.hot == s) {
      c.hot = nullptr;
    } else {
      c.cached.remove(s);
    }
    --count[detail::kCached];
  }

  void give_back(SizeClass& c, StackSlot* s) noexcept;
  // shrink_to(n) gives back the least recently used cached stacks until at
  // most n keep their pages.
  void shrink_to(std::size_t n) noexcept;
  [[gnu::noinline]] void drain_remote() noexcept;
  [[gnu::noinline]] void decay() noexcept;
  // unmap_idle() unmaps every region none of whose stacks is in use.
  void unmap_idle() noexcept;
};

}  // namespace fiberloop
