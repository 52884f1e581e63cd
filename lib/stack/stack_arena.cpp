#include "stack_arena.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <system_error>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define FIBERLOOP_HAVE_VALGRIND 1
#endif

// Linux 6.13: a guard that lives in the page table, so it does not split the
// mapping (Debian 12's headers predate it).
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

namespace fiberloop::detail {
namespace {

// The table the signal handler searches; high_water bounds the search.
std::atomic<StackRegion*> table[kMaxRegions];
std::atomic<std::uint32_t> high_water{0};
std::mutex table_mutex;  // writers only; readers never lock

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

GuardMode probe_guard_mode() noexcept {
  // FIBERLOOP_STACK_GUARDS=mprotect forces the older kernels' way (tests).
  const char* forced = std::getenv("FIBERLOOP_STACK_GUARDS");
  if (forced && std::strcmp(forced, "mprotect") == 0) return GuardMode::mprotect;
  std::size_t p = page_size();
  void* m = ::mmap(nullptr, 2 * p, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return GuardMode::mprotect;
  GuardMode mode =
      ::madvise(m, p, MADV_GUARD_INSTALL) == 0 ? GuardMode::madvise_guard : GuardMode::mprotect;
  ::munmap(m, 2 * p);
  return mode;
}

void install_guard(char* at, std::size_t length) {
  int rc = guard_mode() == GuardMode::madvise_guard ? ::madvise(at, length, MADV_GUARD_INSTALL)
                                                    : ::mprotect(at, length, PROT_NONE);
  if (rc != 0) {
    int err = errno;
    throw std::system_error(
        err, std::generic_category(),
        std::string("fiberloop: cannot install a fiber stack guard (") +
            (guard_mode() == GuardMode::madvise_guard ? "madvise(MADV_GUARD_INSTALL)"
                                                      : "mprotect; see vm.max_map_count") +
            ")");
  }
}

std::uint32_t publish(StackRegion* region) {
  std::lock_guard lock(table_mutex);
  std::uint32_t n = high_water.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!table[i].load(std::memory_order_relaxed)) {
      table[i].store(region, std::memory_order_release);
      return i;
    }
  }
  if (n == kMaxRegions) return kMaxRegions;
  table[n].store(region, std::memory_order_release);
  high_water.store(n + 1, std::memory_order_release);
  return n;
}

}  // namespace

GuardMode guard_mode() noexcept {
  static const GuardMode mode = probe_guard_mode();
  return mode;
}

StackRegion* reserve_region(std::size_t usable, std::size_t guard, std::uint32_t count,
                            void* pool) {
  std::size_t slot_size = guard + usable;
  std::size_t table_offset = round_up(sizeof(StackRegion), alignof(StackSlot));
  std::size_t header = round_up(table_offset + count * sizeof(StackSlot), page_size());
  std::size_t length = header + count * slot_size + guard;
  void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    throw std::system_error(err, std::generic_category(),
                            "fiberloop: cannot reserve " + std::to_string(length >> 20) +
                                " MiB of address space for " + std::to_string(count) +
                                " fiber stacks of " + std::to_string(usable >> 10) + " KiB");
  }
  auto* r = ::new (base) StackRegion;
  r->base = static_cast<char*>(base);
  r->length = length;
  r->first = r->base + header;
  r->guard = guard;
  r->usable = usable;
  r->slot_size = slot_size;
  r->count = count;
  r->pool = pool;
  r->slots = reinterpret_cast<StackSlot*>(r->base + table_offset);
  try {
    // Above the last stack: an underflow past its top faults too.
    install_guard(r->first + count * slot_size, guard);
  } catch (...) {
    ::munmap(base, length);
    throw;
  }
  r->table_index = publish(r);
  if (r->table_index == kMaxRegions) {
    ::munmap(base, length);
    throw std::system_error(ENOMEM, std::generic_category(),
                            "fiberloop: the fiber stack region table is full");
  }
  return r;
}

void carve_slot(StackRegion& region, std::uint32_t i) {
  install_guard(region.bottom_of(i) - region.guard, region.guard);
  // The guard above: a write past the top faults before the next slot is
  // carved too (the last slot's is the region's own).
  if (i + 1 < region.count) install_guard(region.top_of(i), region.guard);
  StackSlot* s = ::new (&region.slots[i]) StackSlot;
#ifdef FIBERLOOP_HAVE_VALGRIND
  s->valgrind_id = VALGRIND_STACK_REGISTER(region.bottom_of(i), region.top_of(i));
#else
  (void)s;
#endif
}

void release_region(StackRegion* region) noexcept {
  {
    std::lock_guard lock(table_mutex);
    table[region->table_index].store(nullptr, std::memory_order_release);
  }
#ifdef FIBERLOOP_HAVE_VALGRIND
  for (std::uint32_t i = 0; i < region->carved; ++i)
    VALGRIND_STACK_DEREGISTER(region->slots[i].valgrind_id);
#endif
  ::munmap(region->base, region->length);
}

void give_back(StackRegion& region, std::uint32_t i) noexcept {
  ::madvise(region.bottom_of(i), region.usable, MADV_DONTNEED);
}

StackRegion* find_region(const void* p) noexcept {
  std::uint32_t n = high_water.load(std::memory_order_acquire);
  for (std::uint32_t k = 0; k < n; ++k) {
    StackRegion* r = table[k].load(std::memory_order_acquire);
    if (r && p >= r->base && p < r->base + r->length) return r;
  }
  return nullptr;
}

GuardHit find_guard_hit(std::uintptr_t address) noexcept {
  std::uint32_t n = high_water.load(std::memory_order_acquire);
  for (std::uint32_t k = 0; k < n; ++k) {
    const StackRegion* r = table[k].load(std::memory_order_acquire);
    if (!r) continue;
    auto first = reinterpret_cast<std::uintptr_t>(r->first);
    if (address < first || address >= first + r->count * r->slot_size) continue;
    std::size_t offset = address - first;
    auto i = static_cast<std::uint32_t>(offset / r->slot_size);
    std::size_t in_slot = offset % r->slot_size;
    if (in_slot >= r->guard) return {};  // inside a stack: not an overflow
    return {r, &r->slots[i], r->guard - in_slot};
  }
  return {};
}

}  // namespace fiberloop::detail
