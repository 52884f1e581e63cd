// calibrate.hpp: how the micro-benchmarks (loop_bench, submit_bench,
// tls_bench) time a case, in one copy so that their figures compare.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

namespace bench {

using Clock = std::chrono::steady_clock;

constexpr double kTargetSeconds = 0.25;
constexpr int kRepetitions = 3;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// best_ns_per_op(name, body, batch) finds how many operations (a multiple
// of batch) body(ops) takes about target_seconds to do (body returns the
// seconds they took; the probing runs double as warm-up), then keeps the
// fastest of kRepetitions runs: noise on a shared machine only ever adds
// time. Prints each run's ns/op as "# name: ...".
inline double best_ns_per_op(const char* name, const std::function<double(long)>& body,
                             long batch = 1, double target_seconds = kTargetSeconds) {
  long ops = batch;
  double took = body(ops);
  while (took < target_seconds / 8) {
    ops *= 2;
    took = body(ops);
  }
  long scaled = static_cast<long>(static_cast<double>(ops) * target_seconds / took);
  ops = std::max(batch, scaled / batch * batch);
  double best = 1e300;
  std::printf("# %s: %ld ops x %d:", name, ops, kRepetitions);
  for (int i = 0; i < kRepetitions; ++i) {
    double ns = body(ops) * 1e9 / static_cast<double>(ops);
    std::printf(" %.1f", ns);
    best = std::min(best, ns);
  }
  std::printf(" ns/op\n");
  std::fflush(stdout);
  return best;
}

}  // namespace bench
