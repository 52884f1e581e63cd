// submit_bench.cpp: calls between two loops on two threads (issue 21) —
// submit()/run_on() against the floor they stand on, call_soon_threadsafe
// callbacks bouncing between the same two loops, measured in the same run.
//
//   latency:    one call at a time, the caller waiting for each answer
//               (the target's thread sleeps in epoll between calls, so each
//               trip includes two cross-thread wake-ups);
//   throughput: a burst of 1,000 calls in flight, then all answers
//               (the target wakes once per burst, not once per call).
//
// Each case calibrates its count to ~0.25 s and keeps the best of three.
// Run from a release build: meson test -C <builddir> --benchmark --verbose submit
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fiberloop/fiberloop.hpp>
#include <functional>
#include <vector>

#include "calibrate.hpp"
#include "cross_loop.hpp"

namespace {

using bench::best_ns_per_op;
using bench::Clock;
using bench::seconds_since;
using fiberloop::EventLoop;

constexpr long kBurst = 1000;

double threadsafe_latency(EventLoop& target, long ops) {
  bench::Bounce bounce{&fiberloop::get_running_loop(), &target, ops, true};
  auto start = Clock::now();
  bounce.send_one();
  fiberloop::await(bounce.done);
  return seconds_since(start);
}

double run_on_latency(EventLoop& target, long ops) {
  long sum = 0;
  auto start = Clock::now();
  for (long i = 0; i < ops; ++i) sum += fiberloop::run_on(target, [] { return 1; });
  double took = seconds_since(start);
  if (sum != ops) std::printf("run_on_latency: wrong sum %ld\n", sum);
  return took;
}

double threadsafe_throughput(EventLoop& target, long ops) {
  auto start = Clock::now();
  for (long sent = 0; sent < ops; sent += kBurst) {
    bench::Bounce bounce{&fiberloop::get_running_loop(), &target, kBurst, false};
    for (long i = 0; i < kBurst; ++i) bounce.send_one();
    fiberloop::await(bounce.done);
  }
  return seconds_since(start);
}

double submit_throughput(EventLoop& target, long ops) {
  std::vector<fiberloop::Future<int>> answers;
  answers.reserve(kBurst);
  long sum = 0;
  auto start = Clock::now();
  for (long sent = 0; sent < ops; sent += kBurst) {
    for (long i = 0; i < kBurst; ++i)
      answers.push_back(fiberloop::submit(target, [] { return 1; }));
    for (auto& answer : answers) sum += fiberloop::await(answer);
    answers.clear();
  }
  double took = seconds_since(start);
  if (sum != ops) std::printf("submit_throughput: wrong sum %ld\n", sum);
  return took;
}

void report(const char* what, double floor_ns, double call_ns) {
  std::printf("%s: call_soon_threadsafe both ways %.1f ns, submit %.1f ns (%.2fx)\n", what,
              floor_ns, call_ns, call_ns / floor_ns);
}

}  // namespace

int main() {
  std::printf("calls from loop 0 to loop 1, each loop on its own pinned thread (%zu cores here)\n",
              fiberloop::LoopGroup::available_cores());
  bench::on_loop_0_of_two([](EventLoop& target) {
    auto on_target = [&target](double (*body)(EventLoop&, long)) {
      return [&target, body](long ops) { return body(target, ops); };
    };
    double floor_trip = best_ns_per_op("threadsafe_round_trip", on_target(threadsafe_latency), 1);
    double submit_trip = best_ns_per_op("run_on_round_trip", on_target(run_on_latency), 1);
    double floor_burst =
        best_ns_per_op("threadsafe_burst_1000", on_target(threadsafe_throughput), kBurst);
    double submit_burst =
        best_ns_per_op("submit_burst_1000", on_target(submit_throughput), kBurst);
    std::printf("\nsummary:\n");
    report("latency (one call in flight)", floor_trip, submit_trip);
    report("throughput (1,000 in flight), per call", floor_burst, submit_burst);
    std::printf("submit throughput: %.0f calls/s, run_on latency: %.1f us\n",
                1e9 / submit_burst, submit_trip / 1000);
  });
  return 0;
}
