// stack_test.cpp: StackPool — sizes, guard page, caching and reuse.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fiberloop/generator.hpp>
#include <fiberloop/stack.hpp>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using fiberloop::StackPool;
using StackContext = boost::context::stack_context;

std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

std::size_t round_to_pages(std::size_t n) {
  return (n + page_size() - 1) / page_size() * page_size();
}

char* bottom_of(const StackContext& sc) { return static_cast<char*>(sc.sp) - sc.size; }

// The permissions column of /proc/self/maps for the mapping holding addr
// ("" if none): the only way to read a page's protection without touching it.
std::string protection_of(const void* addr) {
  auto a = reinterpret_cast<std::uintptr_t>(addr);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::string perms;
    in >> std::hex >> lo >> dash >> hi >> perms;
    if (lo <= a && a < hi) return perms;
  }
  return "";
}

// mincore() fails with ENOMEM on an unmapped page and never faults, so it
// tells whether the pool really gave a stack's memory back.
bool is_mapped(const void* addr) {
  auto page = reinterpret_cast<std::uintptr_t>(addr) & ~(page_size() - 1);
  unsigned char vec = 0;
  if (::mincore(reinterpret_cast<void*>(page), page_size(), &vec) == 0) return true;
  BOOST_REQUIRE_EQUAL(errno, ENOMEM);
  return false;
}

// Runs fn in a forked child and returns the signal that killed it (0 if it
// exited). The child resets SIGSEGV so sanitizer handlers cannot turn the
// fault into an abort, and an alarm bounds it should fn not fault.
template <class Fn>
int death_signal_of(Fn fn) {
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::alarm(10);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGSEGV, &dfl, nullptr);
    ::sigaction(SIGBUS, &dfl, nullptr);
    try {
      fn();
    } catch (...) {
      ::_exit(2);  // never back into Boost.Test in the child
    }
    ::_exit(0);
  }
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  BOOST_REQUIRE_EQUAL(waited, pid);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

// The pool belongs to the thread and outlives each test: every test starts
// from an empty cache and leaves the settings as it found them.
struct PoolFixture {
  StackPool& pool = StackPool::local();
  std::size_t default_size = pool.default_size();
  std::size_t max_cached = pool.max_cached();

  PoolFixture() { pool.trim(); }
  ~PoolFixture() {
    pool.set_default_size(default_size);
    pool.set_max_cached(max_cached);
    pool.trim();
    BOOST_CHECK_EQUAL(pool.mapped(), 0u);
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(stack_pool, PoolFixture)

BOOST_AUTO_TEST_CASE(allocate_rounds_up_to_pages_and_is_writable_throughout) {
  std::size_t requested = 5 * page_size() + 123;
  StackContext sc = pool.allocate(requested);
  BOOST_TEST(sc.size >= requested);
  BOOST_TEST(sc.size == round_to_pages(requested));
  BOOST_TEST(sc.size % page_size() == 0);
  // The ABI wants a 16-byte aligned stack top.
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(sc.sp) % 16 == 0);
  BOOST_TEST(pool.mapped() == 1u);
  BOOST_TEST(pool.cached() == 0u);

  // Every usable byte, first to last, must be writable and keep its value.
  char* bottom = bottom_of(sc);
  std::memset(bottom, 0x5a, sc.size);
  bool intact = true;
  for (std::size_t i = 0; i < sc.size; ++i) intact = intact && bottom[i] == 0x5a;
  BOOST_TEST(intact);
  BOOST_TEST(protection_of(bottom).substr(0, 2) == "rw");
  BOOST_TEST(protection_of(static_cast<char*>(sc.sp) - 1).substr(0, 2) == "rw");

  pool.deallocate(sc);
}

BOOST_AUTO_TEST_CASE(size_zero_uses_the_default_size) {
  BOOST_TEST(pool.default_size() == StackPool::kDefaultSize);
  StackContext sc = pool.allocate();
  BOOST_TEST(sc.size == round_to_pages(StackPool::kDefaultSize));
  pool.deallocate(sc);
}

BOOST_AUTO_TEST_CASE(guard_page_below_the_stack_is_inaccessible) {
  StackContext sc = pool.allocate(16 * 1024);
  char* guard = bottom_of(sc) - 1;  // top byte of the guard page
  BOOST_TEST(protection_of(guard).substr(0, 3) == "---");
  BOOST_TEST(protection_of(guard - page_size() + 1).substr(0, 3) == "---");
  BOOST_TEST(protection_of(bottom_of(sc)).substr(0, 3) == "rw-");

  // A write to the lowest usable byte is fine; one byte lower must fault.
  BOOST_TEST(death_signal_of([&] { *static_cast<volatile char*>(bottom_of(sc)) = 1; }) == 0);
  BOOST_TEST(death_signal_of([&] { *static_cast<volatile char*>(guard) = 1; }) == SIGSEGV);
  pool.deallocate(sc);
}

BOOST_AUTO_TEST_CASE(deallocated_stack_is_reused) {
  StackContext a = pool.allocate(32 * 1024);
  void* sp = a.sp;
  BOOST_TEST(pool.mapped() == 1u);
  BOOST_TEST(pool.cached() == 0u);

  pool.deallocate(a);
  BOOST_TEST(pool.mapped() == 1u);
  BOOST_TEST(pool.cached() == 1u);
  BOOST_TEST(is_mapped(static_cast<char*>(sp) - 1));

  StackContext b = pool.allocate(32 * 1024);
  BOOST_TEST(b.sp == sp);
  BOOST_TEST(b.size == round_to_pages(32 * 1024));
  BOOST_TEST(pool.mapped() == 1u);
  BOOST_TEST(pool.cached() == 0u);
  // The pool keeps its free list inside cached stacks: a reused one must be
  // entirely ours again.
  std::memset(bottom_of(b), 0x11, b.size);

  // A second stack while the first is out needs a fresh mapping.
  StackContext c = pool.allocate(32 * 1024);
  BOOST_TEST(c.sp != b.sp);
  BOOST_TEST(pool.mapped() == 2u);
  pool.deallocate(b);
  pool.deallocate(c);
  BOOST_TEST(pool.cached() == 2u);
  BOOST_TEST(pool.mapped() == 2u);
}

BOOST_AUTO_TEST_CASE(set_max_cached_unmaps_the_excess) {
  std::vector<StackContext> stacks;
  for (int i = 0; i < 4; ++i) stacks.push_back(pool.allocate(16 * 1024));
  std::vector<void*> sps;
  for (auto& sc : stacks) sps.push_back(sc.sp);
  for (auto& sc : stacks) pool.deallocate(sc);
  BOOST_TEST(pool.cached() == 4u);
  BOOST_TEST(pool.mapped() == 4u);

  pool.set_max_cached(1);
  BOOST_TEST(pool.max_cached() == 1u);
  BOOST_TEST(pool.cached() == 1u);
  BOOST_TEST(pool.mapped() == 1u);
  int still_mapped = 0;
  for (void* sp : sps) still_mapped += is_mapped(static_cast<char*>(sp) - 1);
  BOOST_TEST(still_mapped == 1);

  // With the cache full, a released stack is unmapped at once.
  StackContext extra1 = pool.allocate(16 * 1024);  // takes the cached one
  StackContext extra2 = pool.allocate(16 * 1024);  // new mapping
  BOOST_TEST(pool.mapped() == 2u);
  BOOST_TEST(pool.cached() == 0u);
  void* sp2 = extra2.sp;
  pool.deallocate(extra1);
  pool.deallocate(extra2);
  BOOST_TEST(pool.cached() == 1u);
  BOOST_TEST(pool.mapped() == 1u);
  BOOST_TEST(!is_mapped(static_cast<char*>(sp2) - 1));

  // Zero caches nothing.
  pool.set_max_cached(0);
  BOOST_TEST(pool.cached() == 0u);
  BOOST_TEST(pool.mapped() == 0u);
  StackContext sc = pool.allocate(16 * 1024);
  void* sp = sc.sp;
  pool.deallocate(sc);
  BOOST_TEST(pool.cached() == 0u);
  BOOST_TEST(pool.mapped() == 0u);
  BOOST_TEST(!is_mapped(static_cast<char*>(sp) - 1));
}

BOOST_AUTO_TEST_CASE(trim_unmaps_every_cached_stack_but_not_those_in_use) {
  StackContext in_use = pool.allocate(16 * 1024);
  std::vector<void*> sps;
  for (int i = 0; i < 3; ++i) {
    StackContext sc = pool.allocate(16 * 1024 + i * page_size());
    sps.push_back(sc.sp);
    pool.deallocate(sc);
  }
  // A cached stack only serves its own size, so three sizes needed three mappings.
  BOOST_TEST(pool.cached() == 3u);
  BOOST_TEST(pool.mapped() == 4u);

  pool.trim();
  BOOST_TEST(pool.cached() == 0u);
  BOOST_TEST(pool.mapped() == 1u);
  for (void* sp : sps) BOOST_TEST(!is_mapped(static_cast<char*>(sp) - 1));
  BOOST_TEST(is_mapped(static_cast<char*>(in_use.sp) - 1));
  std::memset(bottom_of(in_use), 0x22, in_use.size);

  pool.trim();  // an empty cache is fine
  BOOST_TEST(pool.cached() == 0u);
  pool.deallocate(in_use);
  BOOST_TEST(pool.cached() == 1u);
}

BOOST_AUTO_TEST_CASE(set_default_size_validates_and_applies_to_later_stacks) {
  std::size_t before = pool.default_size();
  BOOST_CHECK_THROW(pool.set_default_size(16 * 1024 - 1), std::invalid_argument);
  BOOST_CHECK_THROW(pool.set_default_size(0), std::invalid_argument);
  BOOST_TEST(pool.default_size() == before);
  StackContext unchanged = pool.allocate();
  BOOST_TEST(unchanged.size == round_to_pages(before));

  pool.set_default_size(16 * 1024);
  BOOST_TEST(pool.default_size() == 16u * 1024);
  StackContext smallest = pool.allocate();
  BOOST_TEST(smallest.size == round_to_pages(16 * 1024));

  pool.set_default_size(100000);
  StackContext odd = pool.allocate();
  BOOST_TEST(odd.size == round_to_pages(100000));
  // An explicit size still wins over the default.
  StackContext explicit_size = pool.allocate(64 * 1024);
  BOOST_TEST(explicit_size.size == 64u * 1024);

  // A stack of the old default size that was cached is not handed out for
  // the new default.
  pool.deallocate(unchanged);
  StackContext after = pool.allocate();
  BOOST_TEST(after.size == round_to_pages(100000));
  BOOST_TEST(after.sp != unchanged.sp);

  for (StackContext* sc : {&smallest, &odd, &explicit_size, &after}) pool.deallocate(*sc);
}

BOOST_AUTO_TEST_CASE(different_sizes_are_not_mixed_up) {
  StackContext small = pool.allocate(16 * 1024);
  StackContext large = pool.allocate(32 * 1024);
  void* small_sp = small.sp;
  void* large_sp = large.sp;
  pool.deallocate(small);
  pool.deallocate(large);
  BOOST_TEST(pool.cached() == 2u);

  // A size cached nowhere gets a new stack, not a bigger or smaller one.
  StackContext middle = pool.allocate(24 * 1024);
  BOOST_TEST(middle.size == 24u * 1024);
  BOOST_TEST(middle.sp != small_sp);
  BOOST_TEST(middle.sp != large_sp);
  BOOST_TEST(pool.mapped() == 3u);
  BOOST_TEST(pool.cached() == 2u);

  // The smaller one was released first, so it is not simply the list head.
  StackContext small_again = pool.allocate(16 * 1024);
  BOOST_TEST(small_again.sp == small_sp);
  BOOST_TEST(small_again.size == 16u * 1024);
  StackContext large_again = pool.allocate(32 * 1024);
  BOOST_TEST(large_again.sp == large_sp);
  BOOST_TEST(large_again.size == 32u * 1024);
  BOOST_TEST(pool.cached() == 0u);
  BOOST_TEST(pool.mapped() == 3u);

  // Requests that round to the same pages share stacks.
  pool.deallocate(small_again);
  StackContext rounded = pool.allocate(16 * 1024 - 100);
  BOOST_TEST(rounded.sp == small_sp);

  for (StackContext* sc : {&middle, &large_again, &rounded}) pool.deallocate(*sc);
}

namespace {

// Recurses until this fiber has used `target` bytes below `top`, returning
// the lowest frame address reached. The frame address is the real stack even
// under ASan, whose fake stack may hold the locals.
char* recurse_until(char* top, std::size_t target, int& depth) {
  volatile char pad[256];
  pad[0] = static_cast<char>(depth);
  char* frame = static_cast<char*>(__builtin_frame_address(0));
  ++depth;
  if (static_cast<std::size_t>(top - frame) >= target) return frame;
  char* lowest = recurse_until(top, target, depth);
  return pad[0] == static_cast<char>(depth) ? nullptr : lowest;  // keeps it from being a tail call
}

}  // namespace

BOOST_AUTO_TEST_CASE(generator_gets_a_stack_of_its_stack_size) {
  constexpr std::size_t kSize = 64 * 1024;
  constexpr std::size_t kUse = kSize * 3 / 4;
  char* top = nullptr;
  char* lowest = nullptr;
  int depth = 0;
  {
    fiberloop::Generator<int> gen(
        [&](auto& g) {
          top = static_cast<char*>(__builtin_frame_address(0));
          lowest = recurse_until(top, kUse, depth);
          g.yield(depth);
        },
        kSize);
    BOOST_TEST(pool.mapped() == 1u);
    BOOST_TEST(pool.cached() == 0u);
    auto got = gen.send();
    BOOST_REQUIRE(got.has_value());
    BOOST_TEST(*got == depth);
    BOOST_TEST(!gen.send().has_value());
  }
  BOOST_TEST(depth > 1);
  BOOST_REQUIRE(lowest != nullptr);
  BOOST_TEST(static_cast<std::size_t>(top - lowest) >= kUse);

  // The generator's stack went back to the pool; asking for its size gets it
  // again, which shows both its size and that the frames lay inside it.
  BOOST_TEST(pool.cached() == 1u);
  StackContext sc = pool.allocate(kSize);
  BOOST_TEST(pool.mapped() == 1u);
  BOOST_TEST(sc.size == kSize);
  BOOST_TEST((bottom_of(sc) <= lowest && top < static_cast<char*>(sc.sp)));
  pool.deallocate(sc);
}

BOOST_AUTO_TEST_CASE(overflowing_a_generator_stack_faults) {
  // Unbounded recursion must hit the guard page, not whatever lies below.
  int sig = death_signal_of([] {
    int depth = 0;
    fiberloop::Generator<int> gen(
        [&](auto& g) {
          char* top = static_cast<char*>(__builtin_frame_address(0));
          recurse_until(top, SIZE_MAX, depth);
          g.yield(depth);
        },
        16 * 1024);
    gen.send();
  });
  BOOST_TEST(sig == SIGSEGV);
}

BOOST_AUTO_TEST_SUITE_END()
