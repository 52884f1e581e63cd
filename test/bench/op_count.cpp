// op_count.cpp: runs one hot-path operation N times with callgrind counting
// only those N (after a warm-up), so instructions per operation can be read
// off the callgrind output without machine noise. Driven by op_count.sh:
//   valgrind --tool=callgrind --collect-atstart=no op_count OP N
// Outside valgrind the toggles are no-ops and it simply runs.
#include <sys/socket.h>
#include <unistd.h>
#include <valgrind/callgrind.h>

#include <boost/context/fiber.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fiberloop/fiberloop.hpp>
#include <fiberloop/net.hpp>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

#include "cross_loop.hpp"

namespace {

namespace ctx = boost::context;

constexpr long kWarmup = 2000;
constexpr long kBatch = 1000;  // callbacks / timers per run_once in the batched cases

// Counted brackets exactly the measured operations.
template <class Fn>
void counted(Fn&& ops) {
  CALLGRIND_TOGGLE_COLLECT;
  ops();
  CALLGRIND_TOGGLE_COLLECT;
}

// The raw round trip every task switch stands on.
void fiber_round_trip(long n) {
  ctx::fiber f{[](ctx::fiber&& caller) {
    for (;;) caller = std::move(caller).resume();
    return std::move(caller);
  }};
  for (long i = 0; i < kWarmup; ++i) f = std::move(f).resume();
  counted([&] {
    for (long i = 0; i < n; ++i) f = std::move(f).resume();
  });
}

// The floor of any scheduler: a ready-queue push and pop around the round trip.
void ready_queue_floor(long n) {
  ctx::fiber f{[](ctx::fiber&& caller) {
    for (;;) caller = std::move(caller).resume();
    return std::move(caller);
  }};
  fiberloop::detail::RingQueue<ctx::fiber*> ready;
  auto once = [&] {
    ready.push_back(&f);
    ctx::fiber* next = ready.pop_front();
    *next = std::move(*next).resume();
  };
  for (long i = 0; i < kWarmup; ++i) once();
  counted([&] {
    for (long i = 0; i < n; ++i) once();
  });
}

// OneStack hands every fiber the same stack: a stack cache's best case.
struct OneStack {
  ctx::stack_context stack;
  ctx::stack_context allocate() const noexcept { return stack; }
  void deallocate(ctx::stack_context&) const noexcept {}
};

// The floor of a spawn: a raw Boost fiber created on a cached stack, run to
// its end (create, first switch in, switch out at the exit). No scheduler, no
// state, no result.
void fiber_spawn_floor(long n) {
  ctx::fixedsize_stack stacks(64 * 1024);
  ctx::stack_context stack = stacks.allocate();
  long runs = 0;
  auto once = [&] {
    ctx::fiber f{std::allocator_arg, OneStack{stack}, [&runs](ctx::fiber&& caller) {
                   ++runs;
                   return std::move(caller);
                 }};
    std::move(f).resume();
  };
  for (long i = 0; i < kWarmup; ++i) once();
  counted([&] {
    for (long i = 0; i < n; ++i) once();
  });
  stacks.deallocate(stack);
  if (runs != n + kWarmup) std::fprintf(stderr, "fiber_spawn_floor: %ld runs\n", runs);
}

template <class Body>
void in_task(Body body) {
  fiberloop::EventLoop loop;
  loop.run_until_complete([&] { body(loop); });
}

void sleep0(long n) {
  in_task([n](fiberloop::EventLoop&) {
    for (long i = 0; i < kWarmup; ++i) fiberloop::sleep(0);
    counted([&] {
      for (long i = 0; i < n; ++i) fiberloop::sleep(0);
    });
  });
}

void await_call_soon(long n) {
  in_task([n](fiberloop::EventLoop& loop) {
    auto once = [&] {
      auto fut = loop.create_future<int>();
      loop.call_soon([fut] { fut.set_result(1); });
      return fiberloop::await(fut);
    };
    for (long i = 0; i < kWarmup; ++i) once();
    counted([&] {
      for (long i = 0; i < n; ++i) once();
    });
  });
}

template <class Options>
void spawn_await(long n, Options options) {
  in_task([n, options](fiberloop::EventLoop& loop) {
    auto once = [&] { return fiberloop::await(loop.create_task(options, [] { return 1; })); };
    for (long i = 0; i < kWarmup; ++i) once();
    counted([&] {
      for (long i = 0; i < n; ++i) once();
    });
  });
}

// One readiness wait and its wake-up through epoll: a task waits for a
// socket it then drains, the byte written by the same task just before it
// waits. The kernel's share (the syscalls) is not counted; the path from the
// wait through the poller back into the task is.
void socket_wait_wake(long n) {
  in_task([n](fiberloop::EventLoop&) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) std::abort();
    fiberloop::net::Socket reader = fiberloop::net::Socket::adopt(fds[0]);
    char byte = 'x';
    auto once = [&] {
      if (::write(fds[1], &byte, 1) != 1) std::abort();
      reader.wait(fiberloop::Poller::kReadable);
      if (::read(fds[0], &byte, 1) != 1) std::abort();
    };
    for (long i = 0; i < kWarmup; ++i) once();
    counted([&] {
      for (long i = 0; i < n; ++i) once();
    });
    ::close(fds[1]);
  });
}

void call_soon_run(long n) {
  fiberloop::EventLoop loop;
  long hits = 0;
  auto batch = [&] {
    for (long i = 0; i < kBatch; ++i) loop.call_soon([&hits] { ++hits; });
    loop.run_once();
  };
  for (long i = 0; i < kWarmup / kBatch + 1; ++i) batch();
  counted([&] {
    for (long done = 0; done < n; done += kBatch) batch();
  });
}

void call_later_fire(long n) {
  fiberloop::EventLoop loop;
  long hits = 0;
  auto batch = [&] {
    for (long i = 0; i < kBatch; ++i) loop.call_later(0.0, [&hits] { ++hits; });
    loop.run_once();
  };
  for (long i = 0; i < kWarmup / kBatch + 1; ++i) batch();
  counted([&] {
    for (long done = 0; done < n; done += kBatch) batch();
  });
}

void call_later_cancel(long n) {
  fiberloop::EventLoop loop;
  auto batch = [&] {
    for (long i = 0; i < kBatch; ++i) loop.call_later(3600.0, [] {}).cancel();
    loop.call_soon([] {});  // so that the iteration does not wait for I/O
    loop.run_once();        // purges the cancelled timers
  };
  for (long i = 0; i < kWarmup / kBatch + 1; ++i) batch();
  counted([&] {
    for (long done = 0; done < n; done += kBatch) batch();
  });
}

// Calls between two loops on two threads: every instruction of both threads
// is counted (callgrind runs one thread at a time), the idle target's
// epoll_wait included. The floor is call_soon_threadsafe both ways.
void threadsafe_round_trip(long n) {
  bench::on_loop_0_of_two([n](fiberloop::EventLoop& target) {
    auto trips = [&](long count) {
      bench::Bounce bounce{&fiberloop::get_running_loop(), &target, count, true};
      bounce.send_one();
      fiberloop::await(bounce.done);
    };
    trips(kWarmup);
    counted([&] { trips(n); });
  });
}

void run_on_round_trip(long n) {
  bench::on_loop_0_of_two([n](fiberloop::EventLoop& target) {
    auto once = [&] { return fiberloop::run_on(target, [] { return 1; }); };
    for (long i = 0; i < kWarmup; ++i) once();
    counted([&] {
      for (long i = 0; i < n; ++i) once();
    });
  });
}

// A burst of kBatch calls in flight, then all answers: per call.
void threadsafe_burst(long n) {
  bench::on_loop_0_of_two([n](fiberloop::EventLoop& target) {
    auto burst = [&] {
      bench::Bounce bounce{&fiberloop::get_running_loop(), &target, kBatch, false};
      for (long i = 0; i < kBatch; ++i) bounce.send_one();
      fiberloop::await(bounce.done);
    };
    for (long i = 0; i < kWarmup / kBatch + 1; ++i) burst();
    counted([&] {
      for (long done = 0; done < n; done += kBatch) burst();
    });
  });
}

void submit_burst(long n) {
  bench::on_loop_0_of_two([n](fiberloop::EventLoop& target) {
    std::vector<fiberloop::Future<int>> answers;
    answers.reserve(kBatch);
    auto burst = [&] {
      for (long i = 0; i < kBatch; ++i)
        answers.push_back(fiberloop::submit(target, [] { return 1; }));
      for (auto& answer : answers) fiberloop::await(answer);
      answers.clear();
    };
    for (long i = 0; i < kWarmup / kBatch + 1; ++i) burst();
    counted([&] {
      for (long done = 0; done < n; done += kBatch) burst();
    });
  });
}

struct Op {
  const char* name;
  std::function<void(long)> run;
};

const Op kOps[] = {
    {"fiber_round_trip", fiber_round_trip},
    {"ready_queue_floor", ready_queue_floor},
    {"fiber_spawn_floor", fiber_spawn_floor},
    {"sleep0", sleep0},
    {"await_call_soon", await_call_soon},
    {"spawn_await", [](long n) { spawn_await(n, fiberloop::TaskOptions{}); }},
    {"spawn_await_eager",
     [](long n) { spawn_await(n, fiberloop::TaskOptions{.eager_start = true}); }},
    {"socket_wait_wake", socket_wait_wake},
    {"call_soon_run", call_soon_run},
    {"call_later_fire", call_later_fire},
    {"call_later_cancel", call_later_cancel},
    {"threadsafe_round_trip", threadsafe_round_trip},
    {"run_on_round_trip", run_on_round_trip},
    {"threadsafe_burst", threadsafe_burst},
    {"submit_burst", submit_burst},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const Op& op : kOps) std::printf("%s\n", op.name);
    return 0;
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: op_count OP N | op_count --list\n");
    return 2;
  }
  long n = std::strtol(argv[2], nullptr, 10);
  if (n <= 0 || n % kBatch != 0) {
    std::fprintf(stderr, "op_count: N must be a positive multiple of %ld\n", kBatch);
    return 2;
  }
  for (const Op& op : kOps) {
    if (std::string_view(op.name) == argv[1]) {
      op.run(n);
      return 0;
    }
  }
  std::fprintf(stderr, "op_count: unknown operation '%s' (see --list)\n", argv[1]);
  return 2;
}
