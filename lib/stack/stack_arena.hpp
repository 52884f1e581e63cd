// stack_arena.hpp (private): the regions fiber stacks are carved from, and
// the process-wide table the overflow reporter searches from a signal handler.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace fiberloop::detail {

struct StackRegion;

// StackOwner says what runs on a slot: a task's own fiber, or a Generator.
enum class StackOwner : std::uint8_t { generator, task };

// StackSlot is the side-table entry of one stack. It lives in the region's
// header pages, never in the stack's memory: an idle stack touches only its
// own top page, and a free stack whose pages were given back stays untouched.
// One cache line each: a spawn or a free touches one line of the table.
struct alignas(64) StackSlot {
  StackSlot* next = nullptr;  // free lists (and the remote-free stack)
  StackSlot* prev = nullptr;
  // Read by the signal handler while the stack runs: plain stores made by the
  // owning thread before it switches to the stack.
  const std::string* name = nullptr;  // the task's name, if it is a task
  std::uint64_t number = 0;           // printed as Task-N when name is empty
  StackRegion* region = nullptr;
  // The pool's hot paths read only this entry: the stack's top, and the
  // pool's free lists for its size (through which, the pool).
  char* top = nullptr;
  void* size_class = nullptr;
  unsigned valgrind_id = 0;
  StackOwner owner = StackOwner::generator;
  std::uint8_t state = 0;    // StackPool's SlotState (lib/stack/pool_core.hpp)
  std::uint8_t holders = 0;  // the fiber, and a task state living at its top
};
static_assert(sizeof(StackSlot) == 64 && alignof(StackSlot) == 64,
              "a side-table entry is one cache line");

// StackRegion is one reservation: [header: this + slots[count]] then count
// times [guard | usable stack], then a last guard. The header is written once
// before the region is published; the carved count belongs to the pool.
struct StackRegion {
  char* base = nullptr;  // the mapping
  std::size_t length = 0;
  char* first = nullptr;  // the first slot's guard
  std::size_t guard = 0;
  std::size_t usable = 0;
  std::size_t slot_size = 0;  // guard + usable
  std::uint32_t count = 0;
  std::uint32_t carved = 0;  // slots handed out at least once (a bump pointer)
  std::uint32_t table_index = 0;
  void* pool = nullptr;        // the StackPool core that owns it
  void* size_class = nullptr;  // the pool's free lists for its slots' size
  StackSlot* slots = nullptr;

  char* bottom_of(std::uint32_t i) const noexcept { return first + i * slot_size + guard; }
  char* top_of(std::uint32_t i) const noexcept { return bottom_of(i) + usable; }
  std::uint32_t index_of(const StackSlot* s) const noexcept {
    return static_cast<std::uint32_t>(s - slots);
  }
  // index_of_top() is the slot whose stack has `sp` as its top (or lower,
  // when a task state sits above the fiber's part of it).
  std::uint32_t index_of_top(const void* sp) const noexcept {
    return static_cast<std::uint32_t>((static_cast<const char*>(sp) - 1 - first) / slot_size);
  }
};

// kMaxRegions bounds the table the signal handler searches: a slot is null
// or a published region.
inline constexpr std::uint32_t kMaxRegions = 16384;

// GuardMode is how guards are made on this kernel: madvise(MADV_GUARD_INSTALL)
// leaves the region one mapping; mprotect(PROT_NONE) splits it at each guard.
enum class GuardMode : std::uint8_t { madvise_guard, mprotect };

// guard_mode() probes the kernel once.
GuardMode guard_mode() noexcept;

// reserve_region() maps a region of `count` slots and publishes it in the
// table. Throws std::system_error (ENOMEM and the sizes) if it cannot.
StackRegion* reserve_region(std::size_t usable, std::size_t guard, std::uint32_t count, void* pool);
// carve_slot() installs the guards below and above slot i and registers it with valgrind.
// Throws std::system_error if the guard cannot be installed.
void carve_slot(StackRegion& region, std::uint32_t i);
// release_region() unpublishes and unmaps a region none of whose stacks is in use.
void release_region(StackRegion* region) noexcept;
// give_back() drops the touched pages of slot i's stack (MADV_DONTNEED).
void give_back(StackRegion& region, std::uint32_t i) noexcept;

// GuardHit is what find_guard_hit() found: the slot whose guard holds the
// address, and how far below that stack's bottom the address is.
struct GuardHit {
  const StackRegion* region = nullptr;
  const StackSlot* slot = nullptr;
  std::size_t below = 0;
};
// find_region() is the published region holding `p`, or null.
StackRegion* find_region(const void* p) noexcept;
// find_guard_hit() is async-signal-safe: no lock, no allocation, only
// acquire loads of the published table.
GuardHit find_guard_hit(std::uintptr_t address) noexcept;

}  // namespace fiberloop::detail
