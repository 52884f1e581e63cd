// stack.hpp: fiber stacks — carved from reserved arenas, guarded, pooled per thread.
#pragma once

#include <boost/context/stack_context.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fiberloop/export.hpp"

namespace fiberloop {

namespace detail {
struct StackSlot;
struct FiberStack;
struct StackLabel;
FIBERLOOP_API void* allocate_with_stack(std::size_t size, std::size_t align,
                                        std::size_t stack_size);
FIBERLOOP_API void release_with_stack(void* p, std::size_t size, std::size_t align) noexcept;
FIBERLOOP_API FiberStack take_fiber_stack(std::size_t size, StackLabel label);
FIBERLOOP_API void give_back_fiber_stack(StackSlot* slot) noexcept;
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

  struct Core;

 private:
  friend void detail::give_back_fiber_stack(detail::StackSlot*) noexcept;
  friend void detail::release_with_stack(void*, std::size_t, std::size_t) noexcept;
  friend detail::FiberStack detail::take_fiber_stack(std::size_t, detail::StackLabel);
  friend void* detail::allocate_with_stack(std::size_t, std::size_t, std::size_t);
  explicit StackPool(bool local);
  static StackPool& make_local();
  // release() drops one holder (the fiber, or the task state) of the slot
  // holding `inside`; the last frees it.
  void release(void* inside, bool fiber) noexcept;
  // release_slot() drops one holder of slot s, from any thread.
  static void release_slot(detail::StackSlot* s, bool fiber) noexcept;
  static void give_to_owner(void* inside) noexcept;
  static void give_to_owner(detail::StackSlot* s) noexcept;
  std::size_t checked(std::size_t size, const char* who) const;
  Core* core_;
  std::size_t default_size_;
  std::size_t guard_size_ = kDefaultGuardSize;
  std::size_t max_cached_ = 256;
  bool local_ = false;  // local(): its death sends later frees to the orphaned core
};

namespace detail {
// FiberStack is a stack for Fiber::create() and its side-table entry.
struct FiberStack {
  boost::context::stack_context stack;
  StackSlot* slot;
};
// StackLabel names the owner of a stack, for an overflow report: a task,
// whose name it prints (`name` must outlive the stack; when it is empty,
// "Task-<number>" is printed), or, with number 0, a Generator.
struct StackLabel {
  const std::string* name = nullptr;
  std::uint64_t number = 0;
};
// take_fiber_stack(size, label) is StackPool::local().allocate(size), or the
// stack below a task state that allocate_with_stack() just placed, labelled
// `label`. Throws as StackPool::allocate().
FIBERLOOP_API FiberStack take_fiber_stack(std::size_t size, StackLabel label = {});
// give_back_fiber_stack(slot) is the fiber's release of the stack it took
// (from any thread): the stack's side-table entry travels with the fiber, so
// giving back searches nothing.
FIBERLOOP_API void give_back_fiber_stack(StackSlot* slot) noexcept;

// allocate_with_stack(size, align, stack_size) returns room for an object of
// `size` bytes at the top of a new stack of stack_size (0: the default), so
// that an idle task touches one page: its state and its frames. The next
// take_fiber_stack() on this thread returns the stack below it. The slot is
// freed when both the fiber and release_with_stack() gave it back.
// Sanitizer builds use the heap instead (ASan then sees every use after
// free). Throws as StackPool::allocate().
FIBERLOOP_API void* allocate_with_stack(std::size_t size, std::size_t align,
                                        std::size_t stack_size);
// A task state up to kMaxPlacedState bytes lives at the top of its own stack
// (allocate_with_stack()): a parked task then touches one page, not a page
// and a heap block. Larger states (big captures or results) would push the
// frames onto a second page. Not in sanitizer builds (kPlaceStates), where
// ASan must see each task state as a heap block. The alignment bound keeps a
// state within 4 KiB of its stack's top.
inline constexpr std::size_t kMaxPlacedState = 1024;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kPlaceStates = false;
#else
inline constexpr bool kPlaceStates = true;
#endif
constexpr bool placed_on_stack(std::size_t size, std::size_t align) noexcept {
  return kPlaceStates && size <= kMaxPlacedState && align <= 4096;
}
// release_with_stack(p, size) gives back what allocate_with_stack() returned;
// it also cancels a pending stack never taken (a constructor that threw).
FIBERLOOP_API void release_with_stack(void* p, std::size_t size, std::size_t align) noexcept;

// Recycling (detail::TaskState::make()): a finished task state placed by
// allocate_with_stack(), whose fiber has ended, may stay at the top of its
// stack as its type's spare on this thread, for the next task of that type.
// The pool counts its stack among the cached ones.
//
// keep_as_spare(slot) makes the stack a spare's: false (nothing changes)
// unless this thread's pool owns it and it is of the default size.
FIBERLOOP_API bool keep_as_spare(StackSlot* slot) noexcept;
// retake_spare_stack(slot, number) gives a spare's stack to its state's next
// fiber, labelled for task `number` (the name's address is the same).
FIBERLOOP_API void retake_spare_stack(StackSlot* slot, std::uint64_t number) noexcept;
// SpareDropper is a task type's hook for dropping its spare on this thread:
// the pool calls each registered one when it trims, when its default size or
// guard changes (a spare's stack would no longer fit), and when it dies.
struct SpareDropper {
  void (*drop)() noexcept;
  SpareDropper* next = nullptr;
  bool registered = false;
};
FIBERLOOP_API void register_spare_dropper(SpareDropper* dropper) noexcept;

}  // namespace detail

}  // namespace fiberloop
