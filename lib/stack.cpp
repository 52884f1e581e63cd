#include "fiberloop/stack.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <new>
#include <system_error>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define FIBERLOOP_HAVE_VALGRIND 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace fiberloop {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr std::size_t kDefault = 1024 * 1024;
#else
constexpr std::size_t kDefault = 256 * 1024;
#endif

std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_to_pages(std::size_t n) {
  std::size_t p = page_size();
  return (n + p - 1) / p * p;
}

// Trailer sits in the top bytes of every mapping, above the usable stack:
// what we must know to unmap it and to deregister it from valgrind.
struct Trailer {
  std::size_t mapping_size;
  unsigned valgrind_id;
};
constexpr std::size_t kTrailerSpace = 64;

Trailer* trailer_of(void* top) { return reinterpret_cast<Trailer*>(top); }

boost::context::stack_context map_stack(std::size_t usable) {
  std::size_t guard = page_size();
  std::size_t mapping = guard + usable + round_to_pages(kTrailerSpace);
  void* base = ::mmap(nullptr, mapping, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED)
    throw std::system_error(errno, std::generic_category(), "mmap of a fiber stack");
  if (::mprotect(base, guard, PROT_NONE) != 0) {
    int err = errno;
    ::munmap(base, mapping);
    throw std::system_error(err, std::generic_category(), "mprotect of a fiber stack guard page");
  }
  char* bottom = static_cast<char*>(base) + guard;
  char* top = bottom + usable;  // the trailer lives in the page above
  Trailer* t = ::new (top) Trailer{mapping, 0};
#ifdef FIBERLOOP_HAVE_VALGRIND
  t->valgrind_id = VALGRIND_STACK_REGISTER(bottom, top);
#endif
  boost::context::stack_context sc;
  sc.sp = top;
  sc.size = static_cast<std::size_t>(top - bottom);
  return sc;
}

void unmap_stack(const boost::context::stack_context& sc) noexcept {
  Trailer* t = trailer_of(sc.sp);
#ifdef FIBERLOOP_HAVE_VALGRIND
  VALGRIND_STACK_DEREGISTER(t->valgrind_id);
#endif
  std::size_t mapping = t->mapping_size;
  char* base = static_cast<char*>(sc.sp) + round_to_pages(kTrailerSpace) - mapping;
  ::munmap(base, mapping);
}

thread_local bool pool_destroyed = false;

}  // namespace

const std::size_t StackPool::kDefaultSize = kDefault;

// A free stack's own memory (just below its top) links it into the list.
struct StackPool::FreeStack {
  FreeStack* next;
  boost::context::stack_context sc;
};

StackPool& StackPool::local() {
  thread_local StackPool pool;
  return pool;
}

StackPool::~StackPool() {
  trim();
  pool_destroyed = true;
}

void StackPool::set_default_size(std::size_t size) {
  if (size < 16 * 1024)
    throw std::invalid_argument("StackPool::set_default_size: a fiber stack needs at least 16 KiB");
  default_size_ = size;
}

void StackPool::set_max_cached(std::size_t n) {
  max_cached_ = n;
  while (cached_ > max_cached_) {
    FreeStack* f = free_;
    free_ = f->next;
    --cached_;
    --mapped_;
    unmap_stack(f->sc);
  }
}

boost::context::stack_context StackPool::allocate(std::size_t size) {
  std::size_t usable = round_to_pages(size ? size : default_size_);
  // First fit on exact size: pools hold one size in practice.
  for (FreeStack** link = &free_; *link; link = &(*link)->next) {
    if ((*link)->sc.size == usable) {
      FreeStack* f = *link;
      *link = f->next;
      --cached_;
      return f->sc;
    }
  }
  boost::context::stack_context sc = map_stack(usable);
  ++mapped_;
  return sc;
}

void StackPool::deallocate(boost::context::stack_context& sc) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  // A fiber that threw or was unwound may leave redzone poison behind; the
  // next fiber on this stack must start clean.
  ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(sc.sp) - sc.size, sc.size);
#endif
  if (cached_ >= max_cached_) {
    --mapped_;
    unmap_stack(sc);
    return;
  }
  auto* f = reinterpret_cast<FreeStack*>(static_cast<char*>(sc.sp) - sizeof(FreeStack));
  ::new (f) FreeStack{free_, sc};
  free_ = f;
  ++cached_;
}

void StackPool::trim() noexcept {
  while (free_) {
    FreeStack* f = free_;
    free_ = f->next;
    --cached_;
    --mapped_;
    unmap_stack(f->sc);
  }
}

void PooledStack::deallocate(boost::context::stack_context& sc) noexcept {
  // A stack released after this thread's pool died (a static Generator) is
  // simply unmapped.
  if (pool_destroyed) {
    unmap_stack(sc);
    return;
  }
  StackPool::local().deallocate(sc);
}

}  // namespace fiberloop
