// stack_test.cpp: StackPool — sizes and their validation, guards, reuse, giving memory back.
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fiberloop/detail/fiber.hpp>
#include <fiberloop/detail/stack_placement.hpp>
#include <fiberloop/fiberloop.hpp>
#include <fiberloop/generator.hpp>
#include <fiberloop/stack.hpp>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define FIBERLOOP_TEST_HAVE_VALGRIND 1
#endif

namespace {

using fiberloop::StackPool;
using StackContext = boost::context::stack_context;

std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

std::size_t round_to_pages(std::size_t n) {
  return (n + page_size() - 1) / page_size() * page_size();
}

char* bottom_of(const StackContext& sc) { return static_cast<char*>(sc.sp) - sc.size; }

// map_count() is the number of mappings in /proc/self/maps.
std::size_t map_count() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::size_t n = 0;
  while (std::getline(maps, line)) ++n;
  return n;
}

// is_resident() tells whether addr's page holds memory (mincore), without
// touching it.
bool is_resident(const void* addr) {
  auto page = reinterpret_cast<std::uintptr_t>(addr) & ~(page_size() - 1);
  unsigned char vec = 0;
  BOOST_REQUIRE_EQUAL(::mincore(reinterpret_cast<void*>(page), page_size(), &vec), 0);
  return vec & 1;
}

// message_of(fn) is the what() of the std::invalid_argument fn throws.
template <class Fn>
std::string message_of(Fn fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no std::invalid_argument>";
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

// Runs fn in a forked child and returns the signal that killed it, or minus
// its exit status (0: it returned). The child resets SIGSEGV so sanitizer handlers cannot turn the
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
  if (WIFSIGNALED(status)) return WTERMSIG(status);
  return -WEXITSTATUS(status);
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
  std::size_t requested = 5 * page_size() + 123 + StackPool::kMinSize;
  StackContext sc = pool.allocate(requested);
  BOOST_TEST(sc.size == round_to_pages(requested));
  // The ABI wants a 16-byte aligned stack top.
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(sc.sp) % 16 == 0);
  BOOST_TEST(pool.in_use() == 1u);
  BOOST_TEST(pool.cached() == 0u);

  // Every usable byte, first to last, must be writable and keep its value.
  char* bottom = bottom_of(sc);
  std::memset(bottom, 0x5a, sc.size);
  bool intact = true;
  for (std::size_t i = 0; i < sc.size; ++i) intact = intact && bottom[i] == 0x5a;
  BOOST_TEST(intact);
  pool.deallocate(sc);
  BOOST_TEST(pool.in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(size_zero_uses_the_default_size) {
  BOOST_TEST(pool.default_size() == StackPool::kDefaultSize);
  StackContext sc = pool.allocate();
  BOOST_TEST(sc.size == round_to_pages(StackPool::kDefaultSize));
  pool.deallocate(sc);
}

BOOST_AUTO_TEST_CASE(the_whole_guard_below_the_stack_faults_and_the_stack_does_not) {
  BOOST_TEST(pool.guard_size() == StackPool::kDefaultGuardSize);
  StackContext sc = pool.allocate(StackPool::kMinSize);
  char* bottom = bottom_of(sc);
  BOOST_TEST(death_signal_of([&] { *static_cast<volatile char*>(bottom) = 1; }) == 0);
  BOOST_TEST(death_signal_of([&] { *static_cast<volatile char*>(bottom - 1) = 1; }) == SIGSEGV);
  // The lowest byte of a 64 KiB guard: a frame that large still cannot jump it.
  char* lowest = bottom - StackPool::kDefaultGuardSize;
  BOOST_TEST(death_signal_of([&] { *static_cast<volatile char*>(lowest) = 1; }) == SIGSEGV);
  // Above the top lies the next stack's guard (or the region's last one).
  BOOST_TEST(death_signal_of([&] { *static_cast<volatile char*>(sc.sp) = 1; }) == SIGSEGV);
  pool.deallocate(sc);
}

BOOST_AUTO_TEST_CASE(set_guard_size_rounds_to_pages_and_applies_to_later_stacks) {
  std::size_t before = pool.guard_size();
  BOOST_CHECK_THROW(pool.set_guard_size(StackPool::kMaxSize + 1), std::invalid_argument);
  BOOST_TEST(pool.guard_size() == before);
  pool.set_guard_size(0);
  BOOST_TEST(pool.guard_size() == page_size());
  pool.set_guard_size(3 * page_size() - 1);
  BOOST_TEST(pool.guard_size() == 3 * page_size());
  StackContext sc = pool.allocate(StackPool::kMinSize);
  char* bottom = bottom_of(sc);
  BOOST_TEST(death_signal_of([&] { *static_cast<volatile char*>(bottom - 1) = 1; }) == SIGSEGV);
  BOOST_TEST(death_signal_of([&] { *static_cast<volatile char*>(bottom - 3 * page_size()) = 1; }) ==
             SIGSEGV);
  pool.deallocate(sc);
  pool.set_guard_size(before);
}

BOOST_AUTO_TEST_CASE(thousands_of_stacks_do_not_multiply_the_mappings) {
  // madvise guards live in the page table: a region stays one mapping, so
  // the task count is not bounded by vm.max_map_count.
  if (std::string(StackPool::guard_kind()) != "madvise") {
    BOOST_TEST_MESSAGE("mprotect guards on this kernel: two mappings per stack");
    return;
  }
  std::size_t before = map_count();
  std::vector<StackContext> stacks;
  for (int i = 0; i < 5000; ++i) stacks.push_back(pool.allocate(StackPool::kMinSize));
  for (auto& sc : stacks) *static_cast<volatile char*>(static_cast<char*>(sc.sp) - 1) = 1;
  std::size_t after = map_count();
  BOOST_TEST(after - before < 40u, "maps grew from " << before << " to " << after);
  for (auto& sc : stacks) pool.deallocate(sc);
}

BOOST_AUTO_TEST_CASE(deallocated_stack_is_reused_most_recent_first) {
  StackContext a = pool.allocate(StackPool::kMinSize);
  StackContext b = pool.allocate(StackPool::kMinSize);
  void* a_sp = a.sp;
  void* b_sp = b.sp;
  BOOST_TEST(a_sp != b_sp);
  BOOST_TEST(pool.mapped() == 2u);
  pool.deallocate(a);
  pool.deallocate(b);
  BOOST_TEST(pool.cached() == 2u);
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(is_mapped(static_cast<char*>(b_sp) - 1));

  // The one freed last is still warm in the caches: it comes back first.
  StackContext c = pool.allocate(StackPool::kMinSize);
  BOOST_TEST(c.sp == b_sp);
  StackContext d = pool.allocate(StackPool::kMinSize);
  BOOST_TEST(d.sp == a_sp);
  BOOST_TEST(pool.cached() == 0u);
  BOOST_TEST(pool.mapped() == 2u);
  // The pool keeps no bookkeeping inside free stacks: a reused one is
  // entirely ours again.
  std::memset(bottom_of(c), 0x11, c.size);
  std::memset(bottom_of(d), 0x22, d.size);
  pool.deallocate(c);
  pool.deallocate(d);
}

BOOST_AUTO_TEST_CASE(set_max_cached_gives_back_the_pages_of_the_excess) {
  std::vector<StackContext> stacks;
  for (int i = 0; i < 4; ++i) stacks.push_back(pool.allocate(StackPool::kMinSize));
  std::vector<char*> bottoms;
  for (auto& sc : stacks) {
    std::memset(bottom_of(sc), 0x33, sc.size);
    bottoms.push_back(bottom_of(sc));
  }
  for (auto& sc : stacks) pool.deallocate(sc);
  BOOST_TEST(pool.cached() == 4u);
  BOOST_TEST(pool.released() == 0u);
  int resident = 0;
  for (char* b : bottoms) resident += is_resident(b);
  BOOST_TEST(resident == 4);

  pool.set_max_cached(1);
  BOOST_TEST(pool.max_cached() == 1u);
  BOOST_TEST(pool.cached() == 4u);    // all still reusable...
  BOOST_TEST(pool.released() == 3u);  // ...but three hold no memory
  resident = 0;
  for (char* b : bottoms) resident += is_resident(b);
  BOOST_TEST(resident == 1);
  // The one kept is the one freed last.
  BOOST_TEST(is_resident(bottoms.back()));

  // A released stack is reused after the kept one.
  StackContext kept = pool.allocate(StackPool::kMinSize);
  BOOST_TEST(static_cast<void*>(bottom_of(kept)) == static_cast<void*>(bottoms.back()));
  StackContext again = pool.allocate(StackPool::kMinSize);
  BOOST_TEST(pool.released() == 2u);
  BOOST_TEST(!is_resident(bottom_of(again)));  // memory comes back only when touched
  pool.deallocate(again);
  pool.deallocate(kept);
}

namespace {

// wait_for_seconds_to_pass(n) returns once the coarse monotonic clock, the
// pool's decay clock, has ticked over n whole seconds (bounded: n + 1 s).
void wait_for_seconds_to_pass(long n) {
  auto now = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec;
  };
  long start = now();
  while (now() < start + n) ::usleep(10'000);
}

}  // namespace

BOOST_AUTO_TEST_CASE(free_stacks_beyond_max_cached_unused_for_a_second_give_back_their_pages) {
  pool.set_max_cached(2);
  std::vector<StackContext> stacks;
  for (int i = 0; i < 10; ++i) stacks.push_back(pool.allocate(StackPool::kMinSize));
  for (auto& sc : stacks) std::memset(bottom_of(sc), 0x44, sc.size);
  for (auto& sc : stacks) pool.deallocate(sc);
  // Within the second, a burst keeps its memory: the next one may reuse it.
  BOOST_TEST(pool.cached() == 10u);
  BOOST_TEST(pool.released() == 0u);

  // The first task end a second later opens a period of observation...
  wait_for_seconds_to_pass(2);
  StackContext one = pool.allocate(StackPool::kMinSize);
  pool.deallocate(one);
  // ...and the first one after a whole quiet second gives back the pages of
  // the stacks never wanted in it beyond max_cached(), least recently used
  // first.
  wait_for_seconds_to_pass(2);
  one = pool.allocate(StackPool::kMinSize);
  pool.deallocate(one);
  BOOST_TEST(pool.cached() == 10u);
  BOOST_TEST(pool.cached() - pool.released() <= 3u);
  BOOST_TEST(is_resident(bottom_of(one)));  // the one freed last is warm
  int resident = 0;
  for (auto& sc : stacks) resident += is_resident(bottom_of(sc));
  BOOST_TEST(resident <= 3);
}

BOOST_AUTO_TEST_CASE(trim_unmaps_idle_regions_but_not_stacks_in_use) {
  StackContext in_use = pool.allocate(StackPool::kMinSize);
  std::vector<void*> sps;
  for (int i = 0; i < 3; ++i) {
    StackContext sc = pool.allocate(StackPool::kMinSize + (i + 1) * page_size());
    sps.push_back(sc.sp);
    pool.deallocate(sc);
  }
  BOOST_TEST(pool.cached() == 3u);
  BOOST_TEST(pool.mapped() == 4u);

  pool.trim();
  BOOST_TEST(pool.cached() == 0u);
  BOOST_TEST(pool.mapped() == 1u);
  // Each of the three sizes had a region of its own, now unmapped.
  for (void* sp : sps) BOOST_TEST(!is_mapped(static_cast<char*>(sp) - 1));
  BOOST_TEST(is_mapped(static_cast<char*>(in_use.sp) - 1));
  std::memset(bottom_of(in_use), 0x22, in_use.size);

  pool.trim();  // an empty cache is fine
  BOOST_TEST(pool.cached() == 0u);
  pool.deallocate(in_use);
  BOOST_TEST(pool.cached() == 1u);
  // The stack keeps its memory after a plain free.
  BOOST_TEST(is_resident(bottom_of(in_use)));
}

BOOST_AUTO_TEST_CASE(set_default_size_applies_to_later_stacks) {
  std::size_t before = pool.default_size();
  pool.set_default_size(StackPool::kMinSize);
  BOOST_TEST(pool.default_size() == StackPool::kMinSize);
  StackContext smallest = pool.allocate();
  BOOST_TEST(smallest.size == StackPool::kMinSize);

  pool.set_default_size(100000);
  BOOST_TEST(pool.default_size() == round_to_pages(100000));
  StackContext odd = pool.allocate();
  BOOST_TEST(odd.size == round_to_pages(100000));
  // An explicit size still wins over the default.
  StackContext explicit_size = pool.allocate(64 * 1024);
  BOOST_TEST(explicit_size.size == 64u * 1024);

  // A cached stack of the old default size is not handed out for the new one.
  pool.deallocate(smallest);
  StackContext after = pool.allocate();
  BOOST_TEST(after.size == round_to_pages(100000));
  BOOST_TEST(after.sp != smallest.sp);
  for (StackContext* sc : {&odd, &explicit_size, &after}) pool.deallocate(*sc);
  pool.set_default_size(before);
}

BOOST_AUTO_TEST_CASE(every_bad_size_is_invalid_argument_naming_it) {
  std::size_t before = pool.default_size();
  const std::size_t bad[] = {
      1, 4096, StackPool::kMinSize - 1, StackPool::kMaxSize + 1, SIZE_MAX, SIZE_MAX - 4095};
  for (std::size_t size : bad) {
    std::string value = std::to_string(size);
    BOOST_TEST(message_of([&] { pool.allocate(size); }).find(value) != std::string::npos, size);
    std::string from_default = message_of([&] { pool.set_default_size(size); });
    BOOST_TEST(from_default.find(value) != std::string::npos, from_default);
    BOOST_TEST(from_default.find("set_default_size") != std::string::npos, from_default);
    std::string from_generator =
        message_of([&] { fiberloop::Generator<int> gen([](auto&) {}, size); });
    BOOST_TEST(from_generator.find(value) != std::string::npos, from_generator);
  }
  BOOST_TEST(message_of([&] { pool.set_default_size(0); }).find("0 is below") != std::string::npos);
  BOOST_TEST(pool.default_size() == before);
  BOOST_TEST(pool.in_use() == 0u);
  // Nothing was disturbed: a stack of the limits still works.
  StackContext smallest = pool.allocate(StackPool::kMinSize);
  std::memset(bottom_of(smallest), 1, smallest.size);
  pool.deallocate(smallest);
}

BOOST_AUTO_TEST_CASE(different_sizes_are_not_mixed_up) {
  StackContext small = pool.allocate(StackPool::kMinSize + 4096);
  StackContext large = pool.allocate(StackPool::kMinSize + StackPool::kMinSize);
  void* small_sp = small.sp;
  void* large_sp = large.sp;
  pool.deallocate(small);
  pool.deallocate(large);
  BOOST_TEST(pool.cached() == 2u);

  // A size cached nowhere gets a new stack, not a bigger or smaller one.
  StackContext middle = pool.allocate(StackPool::kMinSize + 8 * 1024);
  BOOST_TEST(middle.size == StackPool::kMinSize + 8 * 1024);
  BOOST_TEST(middle.sp != small_sp);
  BOOST_TEST(middle.sp != large_sp);
  BOOST_TEST(pool.mapped() == 3u);

  StackContext small_again = pool.allocate(StackPool::kMinSize + 4096);
  BOOST_TEST(small_again.sp == small_sp);
  StackContext large_again = pool.allocate(StackPool::kMinSize + StackPool::kMinSize);
  BOOST_TEST(large_again.sp == large_sp);
  BOOST_TEST(pool.cached() == 0u);

  // Requests that round to the same pages share stacks.
  pool.deallocate(small_again);
  StackContext rounded = pool.allocate(StackPool::kMinSize + 4096 - 100);
  BOOST_TEST(rounded.sp == small_sp);
  for (StackContext* sc : {&middle, &large_again, &rounded}) pool.deallocate(*sc);
}

BOOST_AUTO_TEST_CASE(a_stack_freed_on_another_thread_goes_back_to_its_owner) {
  StackPool* owner_pool = nullptr;
  StackContext sc{};
  std::size_t owner_in_use = 0;
  std::size_t owner_cached = 0;
  std::mutex m;
  std::condition_variable cv;
  int phase = 0;
  std::thread owner([&] {
    std::unique_lock lock(m);
    owner_pool = &StackPool::local();
    sc = owner_pool->allocate(StackPool::kMinSize);
    phase = 1;
    cv.notify_all();
    cv.wait(lock, [&] { return phase == 2; });
    // The next allocation takes the stack back from the remote list.
    StackContext again = owner_pool->allocate(StackPool::kMinSize);
    owner_in_use = owner_pool->in_use();
    owner_cached = owner_pool->cached();
    BOOST_CHECK(again.sp == sc.sp);
    owner_pool->deallocate(again);
  });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return phase == 1; });
    pool.deallocate(sc);  // this thread's pool does not own it
    BOOST_TEST(pool.cached() == 0u);
    phase = 2;
    cv.notify_all();
  }
  owner.join();
  BOOST_TEST(owner_in_use == 1u);
  BOOST_TEST(owner_cached == 0u);
}

BOOST_AUTO_TEST_CASE(a_fiber_stack_freed_on_another_thread_goes_back_to_its_owner) {
  // The fiber's end gives its stack back through the slot it carries, not a
  // search: on a thread that does not own the stack, it joins the owner's
  // remote list, and the owner's next allocation takes it from there.
  char* frame = nullptr;
  auto gen = std::make_unique<fiberloop::Generator<int>>(
      [&](auto& g) {
        frame = static_cast<char*>(__builtin_frame_address(0));
        g.yield(1);
      },
      StackPool::kMinSize);
  BOOST_REQUIRE(gen->send() == 1);
  BOOST_TEST(pool.in_use() == 1u);
  std::size_t other_in_use = 1;
  std::size_t other_cached = 1;
  std::thread other([&] {
    gen.reset();  // unwinds the fiber on this thread
    other_in_use = StackPool::local().in_use();
    other_cached = StackPool::local().cached();
  });
  other.join();
  BOOST_TEST(other_in_use == 0u);
  BOOST_TEST(other_cached == 0u);
  BOOST_TEST(pool.in_use() == 1u);  // still on the remote list
  StackContext again = pool.allocate(StackPool::kMinSize);
  BOOST_TEST(pool.in_use() == 1u);
  BOOST_TEST(pool.cached() == 0u);
  BOOST_TEST((bottom_of(again) < frame && frame < static_cast<char*>(again.sp)));
  pool.deallocate(again);
}

BOOST_AUTO_TEST_CASE(a_stack_outliving_its_thread_gives_its_pages_back_when_freed) {
  // A thread's pool that dies with a stack in use is orphaned; freeing that
  // stack later, from any thread, gives its pages back instead of caching it.
  char* frame = nullptr;
  std::unique_ptr<fiberloop::Generator<int>> gen;
  std::thread owner([&] {
    gen = std::make_unique<fiberloop::Generator<int>>(
        [&](auto& g) {
          frame = static_cast<char*>(__builtin_frame_address(0));
          g.yield(1);
        },
        StackPool::kMinSize);
    BOOST_CHECK(gen->send() == 1);
  });
  owner.join();
  BOOST_REQUIRE(frame != nullptr);
  BOOST_TEST(is_resident(frame));
  gen.reset();
  BOOST_TEST(!is_resident(frame));
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.cached() == 0u);
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
  const std::size_t kSize = std::max<std::size_t>(64 * 1024, StackPool::kMinSize);
  const std::size_t kUse = kSize * 3 / 4;
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
        StackPool::kMinSize);
    gen.send();
  });
  BOOST_TEST(sig == SIGSEGV);
}

namespace {

// run_until(loop, done, limit) runs the loop until done() holds, failing the
// test after `limit` seconds of loop time.
template <class Done>
void run_until(fiberloop::EventLoop& loop, Done done, double limit) {
  auto deadline = loop.time() + limit;
  std::function<void()> check;
  check = [&] {
    if (done() || loop.time() > deadline) {
      loop.stop();
    } else {
      loop.call_later(0.01, check);
    }
  };
  loop.call_soon(check);
  loop.run_forever();
  BOOST_REQUIRE(done());
}

bool under_valgrind() {
#ifdef FIBERLOOP_TEST_HAVE_VALGRIND
  return RUNNING_ON_VALGRIND;
#else
  return false;
#endif
}

}  // namespace

BOOST_AUTO_TEST_CASE(create_task_with_a_bad_stack_size_throws_and_harms_nothing) {
  fiberloop::EventLoop loop;
  auto bystander = loop.create_task([&loop] {
    fiberloop::sleep(0.001);
    return 7;
  });
  for (std::size_t size : {std::size_t{1}, std::size_t{4096}, SIZE_MAX, StackPool::kMinSize - 1,
                           StackPool::kMaxSize + 1}) {
    std::string what = message_of([&] {
      loop.create_task(fiberloop::TaskOptions{"bad", size}, [] { return 1; });
    });
    BOOST_TEST(what.find(std::to_string(size)) != std::string::npos, what);
  }
  BOOST_TEST(loop.all_tasks().size() == 1u);
  BOOST_TEST(pool.in_use() == 1u);
  BOOST_TEST(loop.run_until_complete(bystander) == 7);
  // A task at the smallest size runs what tasks do: waits, throws and
  // catches, is cancelled at a wait.
  auto smallest = loop.create_task(fiberloop::TaskOptions{"smallest", StackPool::kMinSize}, [] {
    fiberloop::sleep(0);
    try {
      throw std::runtime_error("thrown on a small stack");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
  });
  BOOST_TEST(loop.run_until_complete(smallest) == "thrown on a small stack");
  auto cancelled = loop.create_task(fiberloop::TaskOptions{"cancelled", StackPool::kMinSize},
                                    [] { fiberloop::sleep(3600); });
  loop.call_soon([cancelled] { cancelled.cancel(); });
  BOOST_CHECK_THROW(loop.run_until_complete(cancelled), fiberloop::CancelledError);
  BOOST_TEST(pool.in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(a_task_state_lives_at_the_top_of_its_stack_until_its_last_handle_goes) {
  fiberloop::EventLoop loop;
  // One task type for both tasks below: the second recycles the first's
  // state where states are recycled, and takes its slot from the pool
  // where they are not; the same page either way.
  auto spawn = [&loop](char** frame) {
    return loop.create_task([frame] {
      // This frame lies just below the task's state, in the same slot.
      *frame = static_cast<char*>(__builtin_frame_address(0));
      fiberloop::sleep(0);
      return 5;
    });
  };
  char* state_page = nullptr;
  auto t = spawn(&state_page);
  BOOST_TEST(pool.in_use() == 1u);
  BOOST_TEST(loop.run_until_complete(t) == 5);
  BOOST_REQUIRE(state_page != nullptr);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizer builds keep task states on the heap, where ASan watches them.
  BOOST_TEST(pool.retained() == 0u);
#else
  // The fiber has ended, but the finished task's state (its result) still
  // sits at the top of the slot: the slot waits for the last handle.
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.retained() == 1u);
  BOOST_TEST(t.result() == 5);
  t = {};
  BOOST_TEST(pool.retained() == 0u);
#endif
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.cached() == 1u);
  // The next task reuses that slot.
  char* again = nullptr;
  loop.run_until_complete(spawn(&again));
  BOOST_REQUIRE(again != nullptr);
  BOOST_TEST(static_cast<std::size_t>(std::abs(again - state_page)) < page_size());
}

BOOST_AUTO_TEST_CASE(a_hundred_thousand_concurrent_tasks) {
  // Far beyond the 32,739 that two mappings per stack allowed. Under
  // valgrind, whose every stack switch is slow, a tenth of it.
  std::size_t n = under_valgrind() ? 10'000 : 100'000;
#if defined(__SANITIZE_THREAD__)
  n = 5'000;  // TSan counts every fiber as a thread, and dies past 8,128 of them
#endif
  if (std::string(StackPool::guard_kind()) == "mprotect") {
    // Two mappings per stack: the documented limit is vm.max_map_count / 2.
    std::ifstream in("/proc/sys/vm/max_map_count");
    std::size_t max_map_count = 65530;
    in >> max_map_count;
    n = std::min(n, (max_map_count - 2000) / 2);
  }
  auto start = std::chrono::steady_clock::now();
  {
    fiberloop::EventLoop loop;
    auto gate = loop.create_future<int>();
    std::vector<fiberloop::Task<std::size_t>> tasks;
    tasks.reserve(n);
    std::size_t finished = 0;
    for (std::size_t i = 0; i < n; ++i) {
      tasks.push_back(loop.create_task([gate, i, &finished] {
        std::size_t v = fiberloop::await(gate) + i;
        ++finished;
        return v;
      }));
    }
    loop.call_soon([&] {
      // Every task has parked on the gate by now: all stacks are in use.
      BOOST_TEST(pool.in_use() == n);
      gate.set_result(1);
    });
    run_until(
        loop, [&] { return finished == n && loop.all_tasks().empty(); }, 60);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < n; ++i) wrong += tasks[i].result() != i + 1;
    BOOST_TEST(wrong == 0u);
  }
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // About 1 s here, 15 s under ASan (each fiber's fake stack and shadow),
  // 25-32 s under TSan (a fiber context each); the bounds leave room for a
  // loaded machine: they catch a collapse, not a slowdown.
#if defined(__SANITIZE_ADDRESS__)
  BOOST_TEST(took < 60.0);
#elif defined(__SANITIZE_THREAD__)
  BOOST_TEST(took < 90.0);
#else
  BOOST_TEST(took < 30.0);
#endif
  BOOST_TEST(pool.in_use() == 0u);
  // A burst does not pin its memory: beyond max_cached(), the free stacks
  // hold only address space once trimmed, or after a second unused.
  pool.trim();
  BOOST_TEST(pool.cached() == 0u);
}

BOOST_AUTO_TEST_CASE(running_out_of_address_space_fails_only_the_create_task_that_asked) {
#if defined(__SANITIZE_ADDRESS__)
  // ASan reserves terabytes of shadow and dies on a failed allocation, so an
  // address-space limit cannot be tested under it.
  BOOST_TEST_MESSAGE("skipped under ASan");
  return;
#endif
  if (under_valgrind()) return;  // valgrind manages the client's address space itself
  int sig = death_signal_of([] {
    // Leave a fixed allowance above what the process maps now.
    std::ifstream status("/proc/self/status");
    std::string line;
    long vm_kib = 0;
    while (std::getline(status, line)) {
      if (line.rfind("VmSize:", 0) == 0) vm_kib = std::atol(line.c_str() + 7);
    }
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = static_cast<rlim_t>(vm_kib + 1024 * 1024) * 1024;  // +1 GiB
    if (::setrlimit(RLIMIT_AS, &lim) != 0) ::_exit(10);
    fiberloop::EventLoop loop;
    auto gate = loop.create_future<int>();
    std::vector<fiberloop::Task<int>> tasks;
    std::string error;
    for (int i = 0; i < 1'000'000; ++i) {
      try {
        tasks.push_back(loop.create_task(fiberloop::TaskOptions{"", 1 << 20}, [gate] {
          fiberloop::sleep(0);  // runs while the others are being refused
          return fiberloop::await(gate);
        }));
      } catch (const std::system_error& e) {
        error = e.what();
        break;
      }
      if (i % 64 == 0) {
        loop.call_soon([&] { loop.stop(); });
        loop.run_forever();
      }
    }
    if (error.find("cannot reserve") == std::string::npos) ::_exit(11);
    if (tasks.size() < 100) ::_exit(12);
    // The refused task left nothing behind; those running finish normally.
    if (loop.all_tasks().size() != tasks.size()) ::_exit(13);
    gate.set_result(2);
    for (auto& t : tasks) {
      if (loop.run_until_complete(t) != 2) ::_exit(14);
    }
    if (StackPool::local().in_use() != 0) ::_exit(15);
    ::_exit(0);
  });
  BOOST_TEST(sig == 0);
}

// The spawn path: a task's state is placed at the top of its own stack and
// its fiber gets the rest, from one call (detail::place_state), and both
// give the slot back. Sanitizer builds
// keep states on the heap; the counts below hold in both.
namespace {
namespace fd = fiberloop::detail;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kStatesPlaced = false;
#else
constexpr bool kStatesPlaced = true;
#endif
}  // namespace

BOOST_AUTO_TEST_CASE(a_placed_state_and_its_fiber_hold_one_slot_until_both_give_it_back) {
  constexpr std::size_t kState = 200;
  for (bool fiber_first : {true, false}) {
    fd::PlacedState placed = fd::place_state(kState, 0, 0);
    void* state = placed.state;
    fd::FiberStack fs = placed.stack;
    BOOST_TEST(pool.in_use() == 1u);
    if (kStatesPlaced) {
      // The fiber's stack ends where the state begins, in the same slot.
      BOOST_TEST(fs.stack.sp == state);
      std::size_t above = pool.default_size() - fs.stack.size;
      BOOST_TEST(above >= kState + 16);
      BOOST_TEST(above < kState + 16 + 64);  // rounded down to a cache line
    } else {
      BOOST_TEST(fs.stack.size == pool.default_size());
    }
    // State and stack are wholly the caller's: the pool's link to the slot
    // lies in neither.
    std::memset(bottom_of(fs.stack), 0x5a, fs.stack.size);
    std::memset(state, 0x6b, kState);
    if (fiber_first) {
      fd::give_back_fiber_stack(fs.slot);
      BOOST_TEST(pool.in_use() == 0u);
      BOOST_TEST(pool.retained() == (kStatesPlaced ? 1u : 0u));
      fd::release_placed_state(state, kState, 0);
    } else {
      fd::release_placed_state(state, kState, 0);
      BOOST_TEST(pool.in_use() == 1u);  // its fiber still runs on it
      BOOST_TEST(pool.retained() == 0u);
      fd::give_back_fiber_stack(fs.slot);
    }
    BOOST_TEST(pool.in_use() == 0u);
    BOOST_TEST(pool.retained() == 0u);
    BOOST_TEST(pool.cached() == 1u);  // the second round reused the first's slot
  }
}

BOOST_AUTO_TEST_CASE(a_state_freed_before_its_fiber_took_the_stack_frees_the_slot) {
  // A task constructor that throws before it builds its fiber: the
  // placement delete gives back both.
  fd::PlacedState placed = fd::place_state(100, 0, 0);
  BOOST_TEST(pool.in_use() == 1u);
  fd::give_back_fiber_stack(placed.stack.slot);
  fd::release_placed_state(placed.state, 100, 0);
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.cached() == 1u);  // placed or not, a stack was taken and came back
  // The next fiber gets a whole stack of its own, not the part below a
  // state that is gone.
  fd::FiberStack fs = fd::take_fiber_stack(0);
  BOOST_TEST(fs.stack.size == pool.default_size());
  BOOST_TEST(pool.in_use() == 1u);
  std::memset(bottom_of(fs.stack), 0x11, fs.stack.size);
  fd::give_back_fiber_stack(fs.slot);
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.cached() == 1u);
}

// A task whose copied arguments throw when moved: the first move (into the
// state's constructor) fails before its fiber took the stack, the second
// (into the state) after. Either way the room and the stack go back, and
// the loop carries on.
namespace {
thread_local int moves_until_throw = 0;
struct ThrowsOnMove {
  ThrowsOnMove() = default;
  ThrowsOnMove(const ThrowsOnMove&) = default;
  ThrowsOnMove(ThrowsOnMove&&) {
    if (--moves_until_throw == 0) throw std::runtime_error("move failed");
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_task_whose_arguments_throw_on_move_gives_its_room_and_stack_back) {
  fiberloop::EventLoop loop;
  for (int nth : {1, 2}) {
    std::size_t before = pool.in_use();
    ThrowsOnMove arg;
    moves_until_throw = nth;
    BOOST_CHECK_THROW(loop.create_task([](ThrowsOnMove) {}, arg), std::runtime_error);
    BOOST_TEST(pool.in_use() == before, "move " << nth);
    BOOST_TEST(loop.all_tasks().empty(), "move " << nth);
  }
  moves_until_throw = 0;
  auto t = loop.create_task([] { return 7; });
  BOOST_TEST(loop.run_until_complete(t) == 7);
}

BOOST_AUTO_TEST_CASE(placed_states_follow_set_default_size_and_set_guard_size) {
  std::size_t guard = pool.guard_size();
  auto spawn_and_free = [&] {
    fd::PlacedState placed = fd::place_state(64, 0, 0);
    void* state = placed.state;
    fd::FiberStack fs = placed.stack;
    BOOST_TEST(fs.stack.size <= pool.default_size());
    BOOST_TEST(fs.stack.size + page_size() > pool.default_size());
    std::memset(bottom_of(fs.stack), 0x22, fs.stack.size);
    void* sp = fs.stack.sp;
    fd::give_back_fiber_stack(fs.slot);
    fd::release_placed_state(state, 64, 0);
    return sp;
  };
  void* first = spawn_and_free();
  BOOST_TEST(spawn_and_free() == first);  // the default size's stack, reused

  pool.set_default_size(2 * StackPool::kMinSize);
  void* smaller = spawn_and_free();
  BOOST_TEST(smaller != first);
  BOOST_TEST(spawn_and_free() == smaller);

  // Another guard is another size class: the cached stack is not reused.
  pool.set_guard_size(2 * guard);
  void* wider_guard = spawn_and_free();
  BOOST_TEST(wider_guard != smaller);
  BOOST_TEST(spawn_and_free() == wider_guard);
  pool.set_guard_size(guard);
  BOOST_TEST(spawn_and_free() == smaller);
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.cached() == 3u);
}

BOOST_AUTO_TEST_CASE(over_aligned_states_are_aligned_and_given_back) {
  for (std::size_t align :
       {std::size_t{32}, std::size_t{64}, std::size_t{4096}, std::size_t{8192}}) {
    fd::PlacedState placed = fd::place_state(300, align, 0);
    void* state = placed.state;
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(state) % align == 0u, align);
    fd::FiberStack fs = placed.stack;
    // Up to a page of alignment the state still lives on its stack.
    bool on_stack = kStatesPlaced && align <= 4096;
    BOOST_TEST((fs.stack.sp == state) == on_stack, align);
    BOOST_TEST(fs.stack.size + (on_stack ? align + 316 : 0) >= pool.default_size(), align);
    std::memset(bottom_of(fs.stack), 0x33, fs.stack.size);
    std::memset(state, 0x44, 300);
    fd::give_back_fiber_stack(fs.slot);
    fd::release_placed_state(state, 300, align);
    BOOST_TEST(pool.in_use() == 0u);
    BOOST_TEST(pool.retained() == 0u);
  }
  BOOST_TEST(pool.cached() == 1u);
}

// place_state(): the state's room and its fiber's stack from one call, each
// given back on its own; nothing is parked on the thread for a later call.
BOOST_AUTO_TEST_CASE(place_state_returns_a_state_and_the_stack_below_it_in_one_call) {
  constexpr std::size_t kState = 200;
  BOOST_TEST(fd::placed_on_stack(kState, 0) == kStatesPlaced);
  for (bool fiber_first : {true, false}) {
    fd::PlacedState placed = fd::place_state(kState, 0, 0);
    StackContext& sc = placed.stack.stack;
    BOOST_TEST(pool.in_use() == 1u);  // in every build: the stack is taken now
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(placed.state) % (kStatesPlaced ? 64 : 16) == 0u);
    if (kStatesPlaced) {
      BOOST_TEST(sc.sp == placed.state);
      std::size_t above = pool.default_size() - sc.size;
      BOOST_TEST(above >= kState + 16);
      BOOST_TEST(above < kState + 16 + 64);  // rounded down to a cache line
    } else {
      BOOST_TEST(sc.size == pool.default_size());
    }
    std::memset(bottom_of(sc), 0x5a, sc.size);
    std::memset(placed.state, 0x6b, kState);
    if (fiber_first) {
      fd::give_back_fiber_stack(placed.stack.slot);
      BOOST_TEST(pool.in_use() == 0u);
      BOOST_TEST(pool.retained() == (kStatesPlaced ? 1u : 0u));
      fd::release_placed_state(placed.state, kState, 0);
    } else {
      fd::release_placed_state(placed.state, kState, 0);
      BOOST_TEST(pool.in_use() == 1u);  // its fiber still runs on it
      BOOST_TEST(pool.retained() == 0u);
      fd::give_back_fiber_stack(placed.stack.slot);
    }
    BOOST_TEST(pool.in_use() == 0u);
    BOOST_TEST(pool.retained() == 0u);
    BOOST_TEST(pool.cached() == 1u);  // the second round reused the first's slot
  }
}

BOOST_AUTO_TEST_CASE(place_state_parks_nothing_for_a_later_take_fiber_stack) {
  fd::PlacedState placed = fd::place_state(100, 0, 0);
  fd::FiberStack other = fd::take_fiber_stack(0);
  BOOST_TEST(other.slot != placed.stack.slot);
  BOOST_TEST(other.stack.size == pool.default_size());
  BOOST_TEST(pool.in_use() == 2u);
  fd::give_back_fiber_stack(placed.stack.slot);
  fd::release_placed_state(placed.state, 100, 0);
  fd::give_back_fiber_stack(other.slot);
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.retained() == 0u);
  BOOST_TEST(pool.cached() == 2u);
}

BOOST_AUTO_TEST_CASE(place_state_puts_a_state_too_large_to_place_on_the_heap_with_a_whole_stack) {
  // What sanitizer builds do with every state, here in every build.
  constexpr std::size_t kState = fd::kMaxPlacedState + 1;
  fd::PlacedState placed = fd::place_state(kState, 0, 0);
  StackContext& sc = placed.stack.stack;
  BOOST_TEST(sc.size == pool.default_size());
  auto* state = static_cast<char*>(placed.state);
  BOOST_TEST((state + kState <= bottom_of(sc) || state >= static_cast<char*>(sc.sp)));
  BOOST_TEST(pool.in_use() == 1u);
  std::memset(bottom_of(sc), 0x7c, sc.size);
  std::memset(state, 0x7d, kState);
  fd::release_placed_state(placed.state, kState, 0);
  BOOST_TEST(pool.in_use() == 1u);
  fd::give_back_fiber_stack(placed.stack.slot);
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.retained() == 0u);
  BOOST_TEST(pool.cached() == 1u);
}

BOOST_AUTO_TEST_CASE(place_state_aligns_over_aligned_states_and_gives_them_back) {
  for (std::size_t align :
       {std::size_t{32}, std::size_t{64}, std::size_t{4096}, std::size_t{8192}}) {
    fd::PlacedState placed = fd::place_state(300, align, 0);
    StackContext& sc = placed.stack.stack;
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(placed.state) % align == 0u, align);
    // Up to a page of alignment the state still lives on its stack.
    bool on_stack = kStatesPlaced && align <= 4096;
    BOOST_TEST(fd::placed_on_stack(300, align) == on_stack, align);
    BOOST_TEST((sc.sp == placed.state) == on_stack, align);
    BOOST_TEST(sc.size + (on_stack ? align + 316 : 0) >= pool.default_size(), align);
    std::memset(bottom_of(sc), 0x33, sc.size);
    std::memset(placed.state, 0x44, 300);
    fd::give_back_fiber_stack(placed.stack.slot);
    fd::release_placed_state(placed.state, 300, align);
    BOOST_TEST(pool.in_use() == 0u);
    BOOST_TEST(pool.retained() == 0u);
  }
  BOOST_TEST(pool.cached() == 1u);
}

BOOST_AUTO_TEST_CASE(place_state_takes_the_stack_size_asked_and_holds_nothing_when_refused) {
  for (std::size_t state_size : {std::size_t{64}, fd::kMaxPlacedState + 1}) {
    fd::PlacedState placed = fd::place_state(state_size, 0, 2 * StackPool::kMinSize);
    StackContext& sc = placed.stack.stack;
    BOOST_TEST(sc.size <= 2 * StackPool::kMinSize);
    BOOST_TEST(sc.size + page_size() > 2 * StackPool::kMinSize);
    std::memset(bottom_of(sc), 0x21, sc.size);
    fd::give_back_fiber_stack(placed.stack.slot);
    fd::release_placed_state(placed.state, state_size, 0);
    // A size the pool refuses: no stack is held, and no heap block (LSan
    // would see that one in sanitizer builds).
    std::string message =
        message_of([&] { fd::place_state(state_size, 0, StackPool::kMinSize - 1); });
    BOOST_TEST(message.find("below StackPool::kMinSize") != std::string::npos, message);
    BOOST_TEST(pool.in_use() == 0u);
    BOOST_TEST(pool.retained() == 0u);
  }
}

BOOST_AUTO_TEST_CASE(a_fiber_created_on_a_stack_from_place_state_runs_on_it) {
  constexpr std::size_t kState = 128;
  fd::PlacedState placed = fd::place_state(kState, 0, 0);
  char* frame = nullptr;
  {
    fd::Fiber fiber;
    fiber.create(placed.stack,
                 [&frame] { frame = static_cast<char*>(__builtin_frame_address(0)); });
    BOOST_TEST(pool.in_use() == 1u);
    fiber.resume();
    BOOST_TEST(fiber.finished());
  }
  // On that stack, and so below the state where the state is placed on it.
  BOOST_TEST(static_cast<void*>(frame) >= static_cast<void*>(bottom_of(placed.stack.stack)));
  BOOST_TEST(static_cast<void*>(frame) < placed.stack.stack.sp);
  BOOST_TEST((placed.stack.stack.sp == placed.state) == kStatesPlaced);
  // The fiber gave the stack back; the state still holds a placed slot.
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.retained() == (kStatesPlaced ? 1u : 0u));
  fd::release_placed_state(placed.state, kState, 0);
  BOOST_TEST(pool.retained() == 0u);
  BOOST_TEST(pool.cached() == 1u);
}

BOOST_AUTO_TEST_CASE(fiber_create_on_a_given_stack_gives_it_back_when_the_entry_throws) {
  struct ThrowsWhenCopied {
    ThrowsWhenCopied() = default;
    ThrowsWhenCopied(const ThrowsWhenCopied&) { throw std::runtime_error("copy"); }
    void operator()() const {}
  };
  fd::PlacedState placed = fd::place_state(64, 0, 0);
  {
    fd::Fiber fiber;
    ThrowsWhenCopied entry;
    BOOST_CHECK_THROW(fiber.create(placed.stack, entry), std::runtime_error);
  }
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.retained() == (kStatesPlaced ? 1u : 0u));
  fd::release_placed_state(placed.state, 64, 0);
  BOOST_TEST(pool.retained() == 0u);
  BOOST_TEST(pool.cached() == 1u);
}

BOOST_AUTO_TEST_CASE(set_max_cached_0_gives_back_the_most_recently_freed_stack_too) {
  std::vector<StackContext> stacks;
  for (int i = 0; i < 3; ++i) stacks.push_back(pool.allocate(StackPool::kMinSize));
  std::vector<char*> bottoms;
  for (auto& sc : stacks) {
    std::memset(bottom_of(sc), 0x55, sc.size);
    bottoms.push_back(bottom_of(sc));
  }
  for (auto& sc : stacks) pool.deallocate(sc);
  pool.set_max_cached(0);
  BOOST_TEST(pool.cached() == 3u);
  BOOST_TEST(pool.released() == 3u);
  for (char* b : bottoms) BOOST_TEST(!is_resident(b));
  // Released stacks are reused, the most recently released first.
  StackContext again = pool.allocate(StackPool::kMinSize);
  BOOST_TEST(static_cast<void*>(bottom_of(again)) == static_cast<void*>(bottoms.back()));
  BOOST_TEST(pool.released() == 2u);
  pool.deallocate(again);
}

BOOST_AUTO_TEST_CASE(tasks_in_a_row_reuse_one_warm_stack) {
  fiberloop::EventLoop loop;
  std::vector<char*> frames;
  for (int i = 0; i < 5; ++i) {
    loop.run_until_complete(loop.create_task(
        [&] { frames.push_back(static_cast<char*>(__builtin_frame_address(0))); }));
  }
  for (char* f : frames) BOOST_TEST(static_cast<void*>(f) == static_cast<void*>(frames[0]));
  BOOST_TEST(pool.in_use() == 0u);
  BOOST_TEST(pool.retained() == 0u);
  BOOST_TEST(pool.cached() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
