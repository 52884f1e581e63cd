// heap_counter.hpp: counts the global operator new/delete calls of the test
// thread while a measurement is open (alloc_test.cpp, hooks/hooks_test.cpp).
// It replaces the global operators, so exactly one source file of an
// executable includes it.
#pragma once

#include <execinfo.h>
#include <unistd.h>

#include <array>
#include <boost/test/unit_test.hpp>
#include <cstddef>
#include <cstdlib>
#include <new>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif

namespace {

constexpr int kWarmup = 1000;
constexpr int kCounted = 10000;

// Only the test thread counts: Boost.Test and the fixture allocate freely
// outside a measurement.
thread_local bool counting = false;
thread_local bool capturing = false;  // backtrace() may allocate; do not recurse
std::size_t allocations = 0;
std::size_t deallocations = 0;
std::array<void*, 48> first_frames;
int first_depth = 0;

void note_allocation() noexcept {
  if (!counting || capturing) return;
  if (allocations++ == 0) {
    // The first offender's stack is what tells where a path allocates.
    capturing = true;
    first_depth = ::backtrace(first_frames.data(), static_cast<int>(first_frames.size()));
    capturing = false;
  }
}

void note_deallocation(void* p) noexcept {
  if (p && counting && !capturing) ++deallocations;
}

void* allocate(std::size_t size) noexcept {
  note_allocation();
  return std::malloc(size ? size : 1);
}

void* allocate_aligned(std::size_t size, std::align_val_t align) noexcept {
  note_allocation();
  auto a = static_cast<std::size_t>(align);
  if (a < sizeof(void*)) a = sizeof(void*);
  void* p = nullptr;
  return ::posix_memalign(&p, a, size ? size : 1) == 0 ? p : nullptr;
}

void* allocate_or_throw(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}

void release(void* p) noexcept {
  note_deallocation(p);
  std::free(p);
}

struct HeapUse {
  std::size_t allocations;
  std::size_t deallocations;
};

// measure_heap_use(fn) runs fn with counting on. Unless the allocations are
// expected, a non-zero result prints the first one's stack (resolve the
// addresses with addr2line or gdb).
template <class Fn>
HeapUse measure_heap_use(Fn&& fn, bool expected = false) {
  {
    // Loads the unwinder now, not inside the first counted allocation.
    void* frame[1];
    ::backtrace(frame, 1);
  }
  allocations = deallocations = 0;
  first_depth = 0;
  struct Counting {
    Counting() noexcept { counting = true; }
    ~Counting() { counting = false; }
  };
  {
    Counting on;
    fn();
  }
  if (allocations != 0 && first_depth > 0 && !expected) {
    BOOST_TEST_MESSAGE("first counted allocation, from:");
    ::backtrace_symbols_fd(first_frames.data(), first_depth, STDERR_FILENO);
  }
  return {allocations, deallocations};
}

template <class Fn>
void repeat(int n, Fn&& fn) {
  for (int i = 0; i < n; ++i) fn();
}

// steady_state_heap_use(step) warms step up, then counts the heap use of the
// next kCounted runs (both divided by `divisor` for costly steps).
template <class Step>
HeapUse steady_state_heap_use(Step& step, int divisor = 1) {
  repeat(kWarmup / divisor, step);
  return measure_heap_use([&] { repeat(kCounted / divisor, step); });
}

// A macro, so that a failure names the test's own line.
#define CHECK_NO_HEAP_USE(use)             \
  do {                                     \
    BOOST_TEST((use).allocations == 0u);   \
    BOOST_TEST((use).deallocations == 0u); \
  } while (0)

// Valgrind puts its own operator new in place of ours, so nothing here can be
// counted under it.
boost::test_tools::assertion_result not_under_valgrind(boost::unit_test::test_unit_id) {
#ifdef RUNNING_ON_VALGRIND
  if (RUNNING_ON_VALGRIND) {
    boost::test_tools::assertion_result skip(false);
    skip.message() << "valgrind replaces operator new: allocations cannot be counted";
    return skip;
  }
#endif
  return true;
}

}  // namespace

// Every call must reach these through their symbols: inlined or cloned into a
// caller, they would escape tools that interpose the symbols (valgrind does),
// pairing the tool's new with our delete.
#if defined(__clang__)
#define REPLACED __attribute__((noinline))
#else
#define REPLACED __attribute__((noipa))
#endif

REPLACED void* operator new(std::size_t size) { return allocate_or_throw(allocate(size)); }
REPLACED void* operator new[](std::size_t size) { return allocate_or_throw(allocate(size)); }
REPLACED void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return allocate(size);
}
REPLACED void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return allocate(size);
}
REPLACED void* operator new(std::size_t size, std::align_val_t a) {
  return allocate_or_throw(allocate_aligned(size, a));
}
REPLACED void* operator new[](std::size_t size, std::align_val_t a) {
  return allocate_or_throw(allocate_aligned(size, a));
}
REPLACED void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate_aligned(size, a);
}
REPLACED void* operator new[](std::size_t size, std::align_val_t a,
                              const std::nothrow_t&) noexcept {
  return allocate_aligned(size, a);
}

REPLACED void operator delete(void* p) noexcept { release(p); }
REPLACED void operator delete[](void* p) noexcept { release(p); }
REPLACED void operator delete(void* p, std::size_t) noexcept { release(p); }
REPLACED void operator delete[](void* p, std::size_t) noexcept { release(p); }
REPLACED void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
REPLACED void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
REPLACED void operator delete(void* p, std::align_val_t) noexcept { release(p); }
REPLACED void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
REPLACED void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
REPLACED void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
REPLACED void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  release(p);
}
REPLACED void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  release(p);
}
