// pool.cpp: StackPool, this thread's view of it, and frees that reach a
// pool from another thread or after it died.
#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>

#include "pool_thread.hpp"
#include "stack_overflow.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace fiberloop {
namespace detail {

constinit thread_local PoolThread pool_thread{};

void give_to_owner(void* inside) noexcept {
  StackRegion* r = find_region(inside);
  if (r) give_to_owner(&r->slots[r->index_of_top(static_cast<char*>(inside) + 1)]);
}

void give_to_owner(StackSlot* s) noexcept {
  StackRegion* r = s->region;
  auto* owner = static_cast<PoolCore*>(r->pool);
  FIBERLOOP_ASSERT(s->holders > 0, "a stack slot given back more often than it was taken");
  if (--s->holders) return;
  if (owner->orphaned.load(std::memory_order_acquire)) {
    give_back(*r, r->index_of(s));
    return;
  }
  s->next = owner->remote.load(std::memory_order_relaxed);
  while (!owner->remote.compare_exchange_weak(s->next, s, std::memory_order_release,
                                              std::memory_order_relaxed)) {
  }
}

}  // namespace detail

using detail::kInUse;
using detail::kReleased;
using detail::kRetained;
using detail::pool_thread;

const std::size_t StackPool::kDefaultSize = detail::kDefaultStack;
const std::size_t StackPool::kMinSize = detail::kMinStack;

StackPool& StackPool::local() {
  if (StackPool* pool = pool_thread.pool) return *pool;
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
    pool_thread.pool = this;
    pool_thread.core = core_;
  }
}

StackPool::~StackPool() {
  if (local_) {
    detail::drop_spares();  // while their frees still find this pool
    pool_thread.pool = nullptr;
    pool_thread.core = nullptr;  // later frees go to the orphaned core
    pool_thread.default_class = nullptr;
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
  return detail::round_to_pages(size);
}

void StackPool::set_default_size(std::size_t size) {
  default_size_ = checked(size, "StackPool::set_default_size");
  if (local_) {
    pool_thread.default_class = nullptr;
    detail::drop_spares();
  }
}

void StackPool::set_guard_size(std::size_t size) {
  if (size > kMaxSize) {
    throw std::invalid_argument("StackPool::set_guard_size: guard size " + std::to_string(size) +
                                " is above StackPool::kMaxSize (" + std::to_string(kMaxSize) +
                                " bytes)");
  }
  guard_size_ = std::max(detail::round_to_pages(size), detail::page_size());
  if (local_) {
    pool_thread.default_class = nullptr;
    detail::drop_spares();
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
  detail::StackRegion* r = core_->region_of(inside);
  if (!r) {
    detail::give_to_owner(inside);
    return;
  }
  core_->drop(&r->slots[r->index_of_top(static_cast<char*>(inside) + 1)], fiber);
}

void StackPool::trim() noexcept {
  if (local_) detail::drop_spares();
  core_->drain_remote();
  core_->shrink_to(0);
  core_->unmap_idle();
  core_->cached_low = 0;
}

}  // namespace fiberloop
