// scale_bench.cpp: does a loop slow down when another loop runs beside it?
// The same mixed workload — spawn and await a task, then a byte through a
// socketpair waited on through epoll — runs on one loop alone, then on every
// loop of a pinned group at once; each loop's rate is compared with the lone
// loop's. A ratio near 1 means the loops share nothing on these paths (no
// lock, no shared cache line), so a machine with more cores multiplies the
// rate by its core count; below 1 is contention (or, here, two loops
// sharing the machine with the benchmark's own clock and the kernel).
//
// Unlike the echo benchmark there is no client to share the cores with, so
// this is the per-core figure to extrapolate from.
// Run from a release build: meson test -C <builddir> --benchmark --verbose scale
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <fiberloop/net.hpp>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kSeconds = 1.0;
constexpr int kRounds = 3;

// per_second(round) runs round() for kSeconds, reading the clock once per
// 100 rounds, and returns rounds per second.
template <class Round>
double per_second(Round round) {
  long rounds = 0;
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration<double>(kSeconds);
  while (Clock::now() < deadline)
    for (int i = 0; i < 100; ++i, ++rounds) round();
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  return static_cast<double>(rounds) / took;
}

// rounds_per_second() runs the workload for kSeconds on the running loop.
double rounds_per_second() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  auto reader = fiberloop::net::Socket::adopt(fds[0]);
  char byte = 'x';
  double rate = per_second([&] {
    fiberloop::await(fiberloop::get_running_loop().create_task([] { return 1; }));
    if (::write(fds[1], &byte, 1) != 1) std::abort();
    reader.wait(fiberloop::Poller::kReadable);
    if (::read(fds[0], &byte, 1) != 1) std::abort();
  });
  ::close(fds[1]);
  return rate;
}

// machine_rounds_per_second() is the floor with no loop: the same two
// syscalls and a raw fiber round trip, on the same pinned threads. Its own
// ratio says how much of a loop's slow-down is the machine's (shared caches,
// the hypervisor), not fiberloop's.
double machine_rounds_per_second() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  boost::context::fiber f{[](boost::context::fiber&& caller) {
    for (;;) caller = std::move(caller).resume();
    return std::move(caller);
  }};
  char byte = 'x';
  double rate = per_second([&] {
    f = std::move(f).resume();
    if (::write(fds[1], &byte, 1) != 1 || ::read(fds[0], &byte, 1) != 1) std::abort();
  });
  ::close(fds[0]);
  ::close(fds[1]);
  return rate;
}

// Each round's figure is the mean of the loops' rates; the best round is kept.
double per_loop_rate(std::size_t loops, double (*workload)()) {
  double best = 0;
  for (int round = 0; round < kRounds; ++round) {
    fiberloop::LoopGroup group(loops, {.pin_threads = true});
    auto rates = group.run([workload](std::size_t) { return workload(); });
    double mean = 0;
    for (double r : rates) mean += r / static_cast<double>(rates.size());
    std::printf("# %s, %zu thread(s), round %d:", workload == rounds_per_second ? "fiberloop" : "floor",
                loops, round + 1);
    for (double r : rates) std::printf(" %.0f", r);
    std::printf(" rounds/s per thread\n");
    std::fflush(stdout);
    best = std::max(best, mean);
  }
  return best;
}

}  // namespace

int main() {
  std::size_t cores = fiberloop::LoopGroup::available_cores();
  std::printf("spawn+await and a socketpair wait per round, %.1f s x %d rounds, %zu cores\n",
              kSeconds, kRounds, cores);
  struct Row {
    std::size_t loops;
    double each, floor_each;
  };
  double alone = per_loop_rate(1, rounds_per_second);
  double floor_alone = per_loop_rate(1, machine_rounds_per_second);
  std::vector<Row> rows;
  for (std::size_t loops = 2; loops <= cores; loops *= 2)
    rows.push_back({loops, per_loop_rate(loops, rounds_per_second),
                    per_loop_rate(loops, machine_rounds_per_second)});
  std::printf("\nsummary:\n1 loop: %.0f rounds/s (floor without a loop: %.0f)\n", alone,
              floor_alone);
  for (const Row& row : rows)
    std::printf(
        "%zu loops: %.0f rounds/s per loop (%.2fx the lone loop; the floor: %.2fx; fiberloop's "
        "over the floor's: %.2f), %.0f in all (%.2fx)\n",
        row.loops, row.each, row.each / alone, row.floor_each / floor_alone,
        (row.each / alone) / (row.floor_each / floor_alone),
        row.each * static_cast<double>(row.loops), row.each * static_cast<double>(row.loops) / alone);
  if (cores < 2) std::printf("one core only: nothing to scale to\n");
  return 0;
}
