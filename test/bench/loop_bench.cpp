// loop_bench.cpp: what the loop's basic operations cost, as multiples of a raw
// boost::context::fiber switch measured in the same run (machine speed and
// load cancel out of the ratios).
//
// Each case calibrates its iteration count to ~0.25 s, then keeps the best of
// three repetitions. Run it from a release build:
//   meson test -C <builddir> --benchmark --verbose
#include <algorithm>
#include <boost/context/fiber.hpp>
#include <chrono>
#include <cstdio>
#include <fiberloop/fiberloop.hpp>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "calibrate.hpp"

namespace {

namespace ctx = boost::context;
using bench::Clock;
using bench::kRepetitions;
using bench::kTargetSeconds;
using bench::seconds_since;

struct Result {
  std::string name;
  double ns_per_op;
};

// A Body performs `ops` operations (a multiple of its batch size) and returns
// the seconds they took; set-up it does outside its own timing is free.
using Body = std::function<double(long ops)>;

Result measure(const std::string& name, const Body& body, long batch = 1) {
  return {name, bench::best_ns_per_op(name.c_str(), body, batch)};
}

// Runs fn as a task on a fresh loop and returns what it returns.
template <class Fn>
double in_task(Fn fn) {
  fiberloop::EventLoop loop;
  return loop.run_until_complete(std::move(fn), std::ref(loop));
}

// (a) The floor every task switch stands on: resume a fiber that yields
// straight back.
double fiber_round_trip(long ops) {
  ctx::fiber f{[](ctx::fiber&& caller) {
    for (;;) caller = std::move(caller).resume();
    return std::move(caller);
  }};
  auto start = Clock::now();
  for (long i = 0; i < ops; ++i) f = std::move(f).resume();
  return seconds_since(start);  // f's destructor unwinds the fiber, untimed
}

// (a') The floor of any scheduler: a ready-queue push and pop around the
// same round trip.
double ready_queue_floor(long ops) {
  ctx::fiber f{[](ctx::fiber&& caller) {
    for (;;) caller = std::move(caller).resume();
    return std::move(caller);
  }};
  fiberloop::detail::RingQueue<ctx::fiber*> ready;
  auto start = Clock::now();
  for (long i = 0; i < ops; ++i) {
    ready.push_back(&f);
    ctx::fiber* next = ready.pop_front();
    *next = std::move(*next).resume();
  }
  return seconds_since(start);
}

// (b) A task yielding for one loop iteration: two switches plus run_once
// (with its zero-timeout epoll) and a ready-queue trip.
double sleep_zero(long ops) {
  return in_task([ops](fiberloop::EventLoop&) {
    auto start = Clock::now();
    for (long i = 0; i < ops; ++i) fiberloop::sleep(0);
    return seconds_since(start);
  });
}

// (c) Awaiting a future that a callback completes: future state, two
// handles (set_result's and the wake-up's), the done-callback and two switches.
double await_future(long ops) {
  return in_task([ops](fiberloop::EventLoop& loop) {
    long sum = 0;
    auto start = Clock::now();
    for (long i = 0; i < ops; ++i) {
      auto fut = loop.create_future<int>();
      loop.call_soon([fut] { fut.set_result(1); });
      sum += fiberloop::await(fut);
    }
    double took = seconds_since(start);
    if (sum != ops) std::printf("await_future: wrong sum %ld\n", sum);
    return took;
  });
}

// (d) A task's whole life: state and pooled stack, first step, return,
// waking the awaiting task.
double spawn_and_await(long ops) {
  return in_task([ops](fiberloop::EventLoop& loop) {
    long sum = 0;
    auto start = Clock::now();
    for (long i = 0; i < ops; ++i) {
      auto t = loop.create_task([] { return 1; });
      sum += fiberloop::await(t);
    }
    double took = seconds_since(start);
    if (sum != ops) std::printf("spawn_and_await: wrong sum %ld\n", sum);
    return took;
  });
}

// (d') The same with TaskOptions::eager_start: the task runs inside
// create_task and never touches the loop.
double spawn_and_await_eager(long ops) {
  return in_task([ops](fiberloop::EventLoop& loop) {
    long sum = 0;
    const fiberloop::TaskOptions eager{.eager_start = true};
    auto start = Clock::now();
    for (long i = 0; i < ops; ++i) {
      auto t = loop.create_task(eager, [] { return 1; });
      sum += fiberloop::await(t);
    }
    double took = seconds_since(start);
    if (sum != ops) std::printf("spawn_and_await_eager: wrong sum %ld\n", sum);
    return took;
  });
}

constexpr long kMillion = 1'000'000;

// One loop iteration with one callback: what sleep(0) pays on top of its two
// switches (mostly the zero-timeout epoll_pwait2 system call).
double loop_iteration(long ops) {
  fiberloop::EventLoop loop;
  long hits = 0;
  long* p = &hits;
  auto start = Clock::now();
  for (long i = 0; i < ops; ++i) {
    loop.call_soon([p] { ++*p; });
    loop.run_once();
  }
  return seconds_since(start);
}

// (e) call_soon in bulk: a million callbacks queued, then one run_once runs them.
double call_soon_batch(long ops) {
  fiberloop::EventLoop loop;
  long hits = 0;
  long* p = &hits;
  auto start = Clock::now();
  for (long done = 0; done < ops; done += kMillion) {
    for (long i = 0; i < kMillion; ++i) loop.call_soon([p] { ++*p; });
    loop.run_once();
  }
  double took = seconds_since(start);
  if (hits != ops) std::printf("call_soon_batch: ran %ld of %ld\n", hits, ops);
  return took;
}

// (f) A million timers at random delays in [0, 10 ms]: heap pushes, the
// waits, and the pops as they fall due. The 10 ms of waiting is part of it.
double random_timers(long ops) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> delay(0.0, 0.010);
  std::vector<double> delays(kMillion);
  for (double& d : delays) d = delay(rng);

  fiberloop::EventLoop loop;
  long fired = 0;
  long* p = &fired;
  auto start = Clock::now();
  for (long done = 0; done < ops; done += kMillion) {
    for (double d : delays) loop.call_later(d, [p] { ++*p; });
    while (fired < done + kMillion) loop.run_once();
  }
  return seconds_since(start);
}

// (g) call_soon + run and call_later(0) + fire in batches of 1,000 per
// iteration: the wall-clock twins of op_count's call_soon_run and
// call_later_fire (one iteration's bookkeeping spread over the batch).
constexpr long kBatch = 1000;

double call_soon_batch_1000(long ops) {
  fiberloop::EventLoop loop;
  long hits = 0;
  long* p = &hits;
  auto start = Clock::now();
  for (long done = 0; done < ops; done += kBatch) {
    for (long i = 0; i < kBatch; ++i) loop.call_soon([p] { ++*p; });
    loop.run_once();
  }
  double took = seconds_since(start);
  if (hits != ops) std::printf("call_soon_batch_1000: ran %ld of %ld\n", hits, ops);
  return took;
}

double call_later_batch_1000(long ops) {
  fiberloop::EventLoop loop;
  long hits = 0;
  long* p = &hits;
  auto start = Clock::now();
  for (long done = 0; done < ops; done += kBatch) {
    for (long i = 0; i < kBatch; ++i) loop.call_later(0.0, [p] { ++*p; });
    loop.run_once();
  }
  double took = seconds_since(start);
  if (hits != ops) std::printf("call_later_batch_1000: fired %ld of %ld\n", hits, ops);
  return took;
}

}  // namespace

int main() {
  std::printf("fiberloop micro-benchmarks (best of %d, ~%.2f s each)\n", kRepetitions,
              kTargetSeconds);
  std::vector<Result> results;
  results.push_back(measure("fiber_round_trip", fiber_round_trip));
  results.push_back(measure("ready_queue_floor", ready_queue_floor));
  results.push_back(measure("sleep0_round_trip", sleep_zero));
  results.push_back(measure("await_call_soon_future", await_future));
  results.push_back(measure("task_spawn_await", spawn_and_await));
  results.push_back(measure("task_spawn_await_eager", spawn_and_await_eager));
  results.push_back(measure("call_soon_1e6", call_soon_batch, kMillion));
  results.push_back(measure("loop_iteration_one_callback", loop_iteration));
  results.push_back(measure("timers_1e6_random_0_10ms", random_timers, kMillion));
  results.push_back(measure("call_soon_batch_1000", call_soon_batch_1000, kBatch));
  results.push_back(measure("call_later_0_batch_1000", call_later_batch_1000, kBatch));

  std::printf("\nsummary:\n");
  double baseline = results.front().ns_per_op;
  for (const Result& r : results) {
    std::printf("%s: %.1f ns/op  (%.2fx the fiber round trip)\n", r.name.c_str(), r.ns_per_op,
                r.ns_per_op / baseline);
  }
  return 0;
}
