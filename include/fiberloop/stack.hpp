// stack.hpp: fiber stacks — carved from reserved arenas, guarded, pooled per thread.
#pragma once

#include <boost/context/stack_context.hpp>
#include <cstddef>

#include "fiberloop/export.hpp"

namespace fiberloop {

namespace detail {
// StackPoolAccess (lib/stack/pool_core.hpp) is StackPool's one friend: the
// stack layer's own files (task states placed on stacks, spares) reach a
// pool's core through it.
struct StackPoolAccess;
}  // namespace detail

// StackPool hands out fiber stacks. Stacks are slots carved from large
// reserved regions (MAP_NORESERVE: a page costs memory only once touched), so
// the number of live tasks is bounded by memory, not by the kernel's mapping
// count. Below each stack lies a guard region (kDefaultGuardSize by default)
// made with madvise(MADV_GUARD_INSTALL) where the kernel has it (Linux 6.13+;
// the region stays one mapping), else mprotect(PROT_NONE). A fault in a guard
// is reported on stderr, naming the task or Generator, before the process
// dies by the signal. Freed stacks are reused (no mmap per spawn); free
// stacks beyond max_cached() give their pages back once they have stayed
// unused for a second. One pool per thread.
//
// Example:
//   fiberloop::StackPool::local().set_default_size(1 << 20);  // 1 MiB stacks from now on
class FIBERLOOP_API StackPool {
 public:
  // kDefaultSize is the usable size of a stack when none is asked for:
  // 512 KiB (1 MiB in sanitizer builds, whose frames are several times
  // larger). Only touched pages cost memory, but page tables cost about
  // 1/512 of the size per live stack; see README "Fiber stacks".
  static const std::size_t kDefaultSize;
  // kMinSize is the smallest stack a task can run on (its frames, an
  // exception being thrown and caught, a cancellation): 16 KiB (64 KiB in
  // sanitizer builds).
  static const std::size_t kMinSize;
  // kMaxSize is the largest stack size accepted: 1 GiB.
  static constexpr std::size_t kMaxSize = std::size_t{1} << 30;
  // kDefaultGuardSize is the guard below each stack: 64 KiB, so that a frame
  // up to that size cannot jump it even in code built without
  // -fstack-clash-protection.
  static constexpr std::size_t kDefaultGuardSize = 64 * 1024;

  // local() is this thread's pool.
  static StackPool& local();

  StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  // ~StackPool() unmaps its regions, unless stacks are still in use (then the
  // regions stay, their free pages given back).
  ~StackPool();

  // allocate() returns a stack of at least `size` usable bytes (0: the default
  // size), rounded up to whole pages, 16-byte aligned at the top. Throws
  // std::invalid_argument naming `size` if it is below kMinSize or above
  // kMaxSize, std::system_error if the address space or the memory for the
  // region or its guard is exhausted (nothing else is affected then).
  boost::context::stack_context allocate(std::size_t size = 0);
  // deallocate() gives a stack back for reuse (from any thread).
  void deallocate(boost::context::stack_context& stack) noexcept;

  // default_size() / set_default_size() control the size used for size 0.
  // set_default_size() throws std::invalid_argument as allocate() does.
  std::size_t default_size() const noexcept { return default_size_; }
  void set_default_size(std::size_t size);

  // guard_size() / set_guard_size() control the guard below later stacks:
  // rounded up to pages, at least one page. Guards cost no memory, only
  // page-table entries. Throws std::invalid_argument if above kMaxSize.
  std::size_t guard_size() const noexcept { return guard_size_; }
  void set_guard_size(std::size_t size);

  // max_cached() is how many free stacks keep their memory; beyond it, free
  // stacks unused for a second give their pages back (MADV_DONTNEED) and
  // keep only their address space. set_max_cached() gives back the excess now.
  std::size_t max_cached() const noexcept { return max_cached_; }
  void set_max_cached(std::size_t n);

  // cached() counts free stacks held for reuse; released() those of them
  // whose pages were given back; in_use() the stacks a fiber runs on (or
  // will: handed out and not given back).
  std::size_t cached() const noexcept;
  std::size_t released() const noexcept;
  std::size_t in_use() const noexcept;
  // retained() counts the stacks whose fiber has ended but whose top page
  // still holds the state of a finished task someone references: the slot is
  // reused once the last Task handle goes (see README "Fiber stacks").
  std::size_t retained() const noexcept;
  // mapped() is in_use() + cached(): the stacks this pool holds for fibers.
  std::size_t mapped() const noexcept { return in_use() + cached(); }
  // trim() gives back the pages of every free stack and unmaps each region
  // none of whose stacks is in use.
  void trim() noexcept;

  // guard_kind() is "madvise" (MADV_GUARD_INSTALL) or "mprotect": with the
  // latter each live stack costs two kernel mappings (see vm.max_map_count).
  static const char* guard_kind() noexcept;

 private:
  friend struct detail::StackPoolAccess;
  struct Core;
  explicit StackPool(bool local);
  static StackPool& make_local();
  // release() drops one holder (the fiber, or the task state) of the slot
  // holding `inside`; the last frees it.
  void release(void* inside, bool fiber) noexcept;
  std::size_t checked(std::size_t size, const char* who) const;
  Core* core_;
  std::size_t default_size_;
  std::size_t guard_size_ = kDefaultGuardSize;
  std::size_t max_cached_ = 256;
  bool local_ = false;  // local(): its death sends later frees to the orphaned core
};

}  // namespace fiberloop
