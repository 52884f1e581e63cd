// stack.hpp: fiber stacks — mmap'd, guarded, pooled per thread.
#pragma once

#include <boost/context/stack_context.hpp>
#include <cstddef>

#include "fiberloop/export.hpp"

namespace fiberloop {

// StackPool hands out fiber stacks: each is an mmap'd region whose lowest page
// is a PROT_NONE guard (an overflow faults instead of corrupting memory), and
// is registered with valgrind. Released stacks are cached for reuse, so
// spawning a task in steady state costs no mmap. One pool per thread.
//
// Example:
//   fiberloop::StackPool::local().set_default_size(1 << 20);  // 1 MiB stacks from now on
class FIBERLOOP_API StackPool {
 public:
  // kDefaultSize is the usable size of a stack when none is asked for: 256 KiB
  // (1 MiB in sanitizer builds, whose frames are several times larger). Pages
  // are committed only when touched, so the cost is address space.
  static const std::size_t kDefaultSize;

  // local() is this thread's pool.
  static StackPool& local();

  StackPool() = default;
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool();

  // allocate() returns a stack of at least `size` usable bytes (0: the default
  // size), rounded up to whole pages. Throws std::system_error if mmap fails.
  boost::context::stack_context allocate(std::size_t size = 0);
  // deallocate() gives a stack back for reuse (or unmaps it beyond max_cached()).
  void deallocate(boost::context::stack_context& stack) noexcept;

  // default_size() / set_default_size() control the size used for size 0.
  std::size_t default_size() const noexcept { return default_size_; }
  void set_default_size(std::size_t size);

  // max_cached() is how many free stacks the pool keeps; the rest are unmapped.
  std::size_t max_cached() const noexcept { return max_cached_; }
  void set_max_cached(std::size_t n);

  // cached() counts free stacks held now; trim() unmaps them all.
  std::size_t cached() const noexcept { return cached_; }
  void trim() noexcept;

  // mapped() counts stacks mapped by this pool and not yet unmapped.
  std::size_t mapped() const noexcept { return mapped_; }

 private:
  struct FreeStack;
  FreeStack* free_ = nullptr;
  std::size_t cached_ = 0;
  std::size_t mapped_ = 0;
  std::size_t default_size_ = kDefaultSize;
  std::size_t max_cached_ = 256;
};

// PooledStack is a Boost.Context StackAllocator handing Boost a stack already
// taken from StackPool::local(), and giving it back there when the fiber ends.
class FIBERLOOP_API PooledStack {
 public:
  explicit PooledStack(boost::context::stack_context stack) noexcept : stack_(stack) {}
  boost::context::stack_context allocate() noexcept { return stack_; }
  void deallocate(boost::context::stack_context& stack) noexcept;

 private:
  boost::context::stack_context stack_;
};

}  // namespace fiberloop
