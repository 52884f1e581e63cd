// stack_bench.cpp: fiber stacks at scale — spawn cost against the number of
// tasks in flight, and memory per idle task.
//
//   stack_bench                 every case below
//   stack_bench spawn N...      spawn+finish with N tasks kept in flight, then
//                               the same pattern on bare fibers (the baseline)
//   stack_bench idle N [guard [shared]]  VmRSS / VmPTE per task parked on a future
//
// STACK_KIB / GUARD_KIB in the environment set the pool's default stack size
// and guard width; SPAWN_OPS the spawns timed per case (1,000,000).
#include <sys/mman.h>

#include <boost/context/detail/fcontext.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fiberloop/fiberloop.hpp>
#include <fstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// status_kib(field) reads a "VmRSS:"-style line of /proc/self/status, in KiB.
long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  std::size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0) return std::atol(line.c_str() + n + 1);
  }
  return -1;
}

// spawn_cost(in_flight, ops) keeps `in_flight` tasks alive, each parked once
// (sleep(0)) before it returns; every step awaits the oldest and spawns a new
// one. Returns ns per spawn+finish.
double spawn_cost(std::size_t in_flight, long ops) {
  fiberloop::EventLoop loop;
  return loop.run_until_complete([&] {
    auto body = [] {
      fiberloop::sleep(0);
      return 1;
    };
    std::vector<fiberloop::Task<int>> ring;
    for (std::size_t i = 0; i < in_flight; ++i) ring.push_back(loop.create_task(body));
    long sum = 0;
    // One untimed lap warms the pool and the ring.
    for (std::size_t i = 0; i < in_flight; ++i) {
      sum += fiberloop::await(ring[i]);
      ring[i] = loop.create_task(body);
    }
    auto start = Clock::now();
    for (long i = 0; i < ops; ++i) {
      std::size_t k = static_cast<std::size_t>(i) % in_flight;
      sum += fiberloop::await(ring[k]);
      ring[k] = loop.create_task(body);
    }
    double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count() /
                static_cast<double>(ops);
    for (auto& t : ring) sum += fiberloop::await(t);
    if (sum != ops + 2 * static_cast<long>(in_flight)) std::printf("spawn: wrong sum\n");
    return ns;
  });
}

// idle_cost(n, guard, shared_future) parks n tasks, each on a future of its
// own (or all on one), and prints VmRSS and VmPTE growth per task: the
// stack's top page, the task state, the future's and the stack's side-table
// entry.
void idle_cost(std::size_t n, std::size_t guard, bool shared_future) {
  if (guard) fiberloop::StackPool::local().set_guard_size(guard);
  fiberloop::EventLoop loop;
  std::vector<fiberloop::Task<void>> tasks;
  tasks.reserve(n);
  // Warm up: the first spawns build the loop's queues and the pool's lists.
  for (int i = 0; i < 100; ++i) loop.run_until_complete(loop.create_task([] {}));
  long rss0 = status_kib("VmRSS:");
  long pte0 = status_kib("VmPTE:");
  auto shared = loop.create_future<void>();
  auto start = Clock::now();
  // Spawned a thousand per loop iteration, as a server accepts connections:
  // the ready queue does not grow to hold them all at once.
  for (std::size_t i = 0; i < n; ++i) {
    if (shared_future) {
      tasks.push_back(loop.create_task([shared] { fiberloop::await(shared); }));
    } else {
      tasks.push_back(loop.create_task([&loop] { fiberloop::await(loop.create_future<void>()); }));
    }
    if (i % 1000 == 999 || i + 1 == n) {
      loop.call_soon([&] { loop.stop(); });
      loop.run_forever();  // these tasks run their first step and park
    }
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  long rss1 = status_kib("VmRSS:");
  long pte1 = status_kib("VmPTE:");
  // The vector of handles is 8 B per task; it is counted, as a server would
  // hold something per connection too.
  std::printf(
      "idle %8zu tasks (guard %4zu KiB, stack %zu KiB, %s future): %6.0f B RSS/task, %5.0f B "
      "page tables/task, %.2f s to park them\n",
      n, fiberloop::StackPool::local().guard_size() >> 10,
      fiberloop::StackPool::local().default_size() >> 10, shared_future ? "one shared" : "own",
      static_cast<double>(rss1 - rss0) * 1024 / static_cast<double>(n),
      static_cast<double>(pte1 - pte0) * 1024 / static_cast<double>(n), secs);
  for (auto& t : tasks) t.cancel();
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  std::size_t cancelled = 0;
  for (auto& t : tasks) cancelled += t.cancelled();
  if (cancelled != n) std::printf("idle: only %zu of %zu tasks were cancelled\n", cancelled, n);
  std::fflush(stdout);
}

// The same pattern on bare fibers, the baseline for the memory system's
// share: stacks as far apart as the pool's slots (stack + guard), each fiber
// created, run to a yield, and finished `in_flight` spawns later. No
// scheduler, no task state: a visit touches the saved context and one frame.
long raw_visits = 0;
void raw_body(boost::context::detail::transfer_t t) {
  ++raw_visits;
  t = boost::context::detail::jump_fcontext(t.fctx, nullptr);
  ++raw_visits;
  boost::context::detail::jump_fcontext(t.fctx, nullptr);  // never resumed
}

double raw_spawn_cost(std::size_t in_flight, long ops) {
  namespace bcd = boost::context::detail;
  auto& pool = fiberloop::StackPool::local();
  std::size_t spacing = pool.default_size() + pool.guard_size();
  std::size_t length = in_flight * spacing;
  void* region = mmap(nullptr, length, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED) return 0;
  auto* base = static_cast<char*>(region);
  std::vector<bcd::fcontext_t> parked(in_flight, nullptr);
  auto spawn = [&](long i) {
    std::size_t k = static_cast<std::size_t>(i) % in_flight;
    if (parked[k]) bcd::jump_fcontext(parked[k], nullptr);  // its second visit: it ends
    parked[k] = bcd::make_fcontext(base + (k + 1) * spacing, pool.default_size(), raw_body);
    parked[k] = bcd::jump_fcontext(parked[k], nullptr).fctx;  // first visit, to its yield
  };
  for (long i = 0; i < static_cast<long>(2 * in_flight); ++i) spawn(i);
  auto start = Clock::now();
  for (long i = 0; i < ops; ++i) spawn(i);
  double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count() /
              static_cast<double>(ops);
  for (bcd::fcontext_t& f : parked) bcd::jump_fcontext(f, nullptr);
  munmap(region, length);
  return ns;
}

void spawn_cases(const std::vector<std::size_t>& counts) {
  // SPAWN_OPS in the environment shortens the runs (callgrind's cache simulator).
  const char* ops_env = std::getenv("SPAWN_OPS");
  const long kOps = ops_env ? std::strtol(ops_env, nullptr, 10) : 1'000'000;
  double base = 0;
  for (std::size_t n : counts) {
    double best = 1e300;
    for (int rep = 0; rep < 3; ++rep) best = std::min(best, spawn_cost(n, kOps));
    if (base == 0) base = best;
    std::printf("spawn+finish, %6zu in flight: %7.1f ns  (%.2fx the %zu figure)\n", n, best,
                best / base, counts.front());
    std::fflush(stdout);
  }
  double raw_base = 0;
  for (std::size_t n : counts) {
    double best = 1e300;
    for (int rep = 0; rep < 3; ++rep) best = std::min(best, raw_spawn_cost(n, kOps));
    if (raw_base == 0) raw_base = best;
    std::printf("bare fibers,  %6zu in flight: %7.1f ns  (+%.1f ns over the %zu figure)\n", n,
                best, best - raw_base, counts.front());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* s = std::getenv("STACK_KIB"))
    fiberloop::StackPool::local().set_default_size(std::strtoul(s, nullptr, 10) << 10);
  if (const char* s = std::getenv("GUARD_KIB"))
    fiberloop::StackPool::local().set_guard_size(std::strtoul(s, nullptr, 10) << 10);
  std::printf("guards: %s\n", fiberloop::StackPool::guard_kind());
  if (argc >= 2 && std::strcmp(argv[1], "spawn") == 0) {
    std::vector<std::size_t> counts;
    for (int i = 2; i < argc; ++i) counts.push_back(std::strtoul(argv[i], nullptr, 10));
    spawn_cases(counts);
    return 0;
  }
  if (argc >= 3 && std::strcmp(argv[1], "idle") == 0) {
    idle_cost(std::strtoul(argv[2], nullptr, 10),
              argc >= 4 ? std::strtoul(argv[3], nullptr, 10) : 0,
              argc >= 5 && std::strcmp(argv[4], "shared") == 0);
    return 0;
  }
  spawn_cases({16, 256, 1000, 4000, 10000});
  // Each idle case in its own process, so one's freed memory does not hide
  // the next one's growth.
  for (const char* args : {"idle 100000", "idle 200000", "idle 200000 0 shared", "idle 1000000",
                           "idle 100000 4096", "idle 100000 1048576"}) {
    std::string cmd = std::string("'") + argv[0] + "' " + args;
    if (std::system(cmd.c_str()) != 0) return 1;
  }
  return 0;
}
