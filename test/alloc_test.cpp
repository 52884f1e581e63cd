// alloc_test.cpp: the hot paths make no heap allocation in steady state.
//
// This executable replaces the global operator new/delete with versions that
// count while a measurement is open. Each case warms a path up (pools, the
// ready queue and the timer heap reach their working size), then counts over
// the next iterations, with the loop's own machinery (run_once, task steps,
// fiber switches) inside the measured region.
#include <execinfo.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/test/unit_test.hpp>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <ostream>
#include <string_view>
#include <vector>

#include "discard_stream.hpp"
#include "heap_counter.hpp"
#include "loop_fixture.hpp"

namespace {

// A callable well beyond the object pool's largest size class, so that the
// library must go to the global operator new for it.
struct Huge {
  int* hits;
  std::array<char, 4096> ballast{};
  void operator()() const { ++*hits; }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(alloc, LoopFixture, *boost::unit_test::precondition(not_under_valgrind))

// Without this, a zero below could mean the library's allocations bypass our
// operator new (e.g. resolved inside the shared library) rather than absent.
BOOST_AUTO_TEST_CASE(counter_sees_allocations_made_inside_the_library) {
  int hits = 0;
  HeapUse plain = measure_heap_use([] { ::operator delete(::operator new(16)); }, true);
  BOOST_TEST(plain.allocations == 1u);
  BOOST_TEST(plain.deallocations == 1u);

  loop.call_soon([] {});  // the handle pool and ready queue exist already
  loop.run_once();
  HeapUse huge = measure_heap_use(
      [&] {
        loop.call_soon(Huge{&hits});
        loop.run_once();
      },
      true);
  BOOST_TEST(hits == 1);
  BOOST_TEST(huge.allocations >= 1u);
  BOOST_TEST(huge.deallocations >= 1u);
}

BOOST_AUTO_TEST_CASE(call_soon_and_run) {
  int hits = 0;
  int* p = &hits;
  auto once = [&] {
    loop.call_soon([p] { ++*p; });
    loop.run_once();
  };
  HeapUse use = steady_state_heap_use(once);
  BOOST_TEST(hits == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

// Posts through call_soon_threadsafe (from the loop thread: the counter sees
// this thread only) reuse the two swapped buffers of the post queue.
BOOST_AUTO_TEST_CASE(call_soon_threadsafe_and_run) {
  int hits = 0;
  int* p = &hits;
  auto once = [&] {
    loop.call_soon_threadsafe([p] { ++*p; });
    loop.run_once();
  };
  HeapUse use = steady_state_heap_use(once);
  BOOST_TEST(hits == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

// Bursts larger than the ready queue's first capacity: it grows during the
// warm-up only.
BOOST_AUTO_TEST_CASE(call_soon_bursts) {
  constexpr int kBurst = 200;
  int hits = 0;
  int* p = &hits;
  auto burst = [&] {
    for (int i = 0; i < kBurst; ++i) loop.call_soon([p] { ++*p; });
    loop.run_once();
  };
  HeapUse use = steady_state_heap_use(burst, 10);
  BOOST_TEST(hits == (kWarmup + kCounted) / 10 * kBurst);
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(call_later_zero_fires) {
  int hits = 0;
  int* p = &hits;
  bool stuck = false;
  auto once = [&] {
    int target = hits + 1;
    loop.call_later(0.0, [p] { ++*p; });
    // A zero delay is due by the next look at the clock; the bound only keeps
    // a regression from hanging the test.
    for (int spins = 0; hits < target && spins < 1000; ++spins) loop.run_once();
    stuck = stuck || hits != target;
  };
  HeapUse use = steady_state_heap_use(once);
  BOOST_TEST(!stuck);
  BOOST_TEST(hits == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(cancelled_timer) {
  int hits = 0;
  int ticks = 0;
  int* p = &hits;
  int* t = &ticks;
  auto once = [&] {
    auto h = loop.call_later(10.0, [p] { ++*p; });
    h.cancel();
    // Something ready, so run_once does not wait for the (cancelled) timer.
    loop.call_soon([t] { ++*t; });
    loop.run_once();
  };
  HeapUse use = steady_state_heap_use(once);
  BOOST_TEST(hits == 0);
  BOOST_TEST(ticks == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

// Many cancelled timers at once take run_once's other path: the heap is
// filtered and rebuilt in place.
BOOST_AUTO_TEST_CASE(cancelled_timer_bulk_purge) {
  constexpr int kBatch = 150;  // above asyncio's 100-handle threshold
  int hits = 0;
  int ticks = 0;
  int* p = &hits;
  int* t = &ticks;
  std::vector<fiberloop::TimerHandle> handles;
  handles.reserve(kBatch);
  auto once = [&] {
    for (int i = 0; i < kBatch; ++i) handles.push_back(loop.call_later(10.0 + i, [p] { ++*p; }));
    for (auto& h : handles) h.cancel();
    handles.clear();
    loop.call_soon([t] { ++*t; });
    loop.run_once();
  };
  HeapUse use = steady_state_heap_use(once, 10);
  BOOST_TEST(hits == 0);
  BOOST_TEST(ticks == (kWarmup + kCounted) / 10);
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(sleep_zero_in_task) {
  int iterations = 0;
  int* it = &iterations;
  HeapUse use = run([&] {
    // A callback counting loop iterations shows each sleep(0) really went
    // through the loop (a shortcut that never yields would allocate nothing too).
    repeat(kWarmup, [] { fiberloop::sleep(0); });
    int before = iterations;
    HeapUse u = measure_heap_use([&] {
      repeat(kCounted, [&] {
        loop.call_soon([it] { ++*it; });
        fiberloop::sleep(0);
      });
    });
    BOOST_TEST(iterations - before == kCounted);
    return u;
  });
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(await_future_set_by_call_soon) {
  long sum = 0;
  HeapUse use = run([&] {
    auto once = [&] {
      auto fut = loop.create_future<int>();
      loop.call_soon([fut] { fut.set_result(7); });
      sum += fiberloop::await(fut);
    };
    return steady_state_heap_use(once);
  });
  BOOST_TEST(sum == 7L * (kWarmup + kCounted));
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(await_void_future_set_by_call_soon) {
  int done = 0;
  HeapUse use = run([&] {
    auto once = [&] {
      auto fut = loop.create_future<void>();
      loop.call_soon([fut] { fut.set_result(); });
      fiberloop::await(fut);
      ++done;
    };
    return steady_state_heap_use(once);
  });
  BOOST_TEST(done == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(short_sleep_in_task) {
  HeapUse use = run([&] {
    double start = loop.time();
    repeat(kWarmup, [] { fiberloop::sleep(1e-6); });
    HeapUse u = measure_heap_use([] { repeat(kCounted, [] { fiberloop::sleep(1e-6); }); });
    // Never early: every sleep lasted its microsecond at least.
    BOOST_TEST(loop.time() - start >= (kWarmup + kCounted) * 1e-6);
    return u;
  });
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(task_spawn_and_finish) {
  int hits = 0;
  int* p = &hits;
  HeapUse use = run([&] {
    auto once = [&] {
      auto t = loop.create_task([p] { return ++*p; });
      fiberloop::await(t);
    };
    return steady_state_heap_use(once);
  });
  BOOST_TEST(hits == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(eager_task_spawn_and_finish) {
  int hits = 0;
  int* p = &hits;
  HeapUse use = run([&] {
    auto once = [&] {
      auto t = loop.create_task(fiberloop::TaskOptions{.eager_start = true}, [p] { return ++*p; });
      fiberloop::await(t);
    };
    return steady_state_heap_use(once);
  });
  BOOST_TEST(hits == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

// Tasks nobody awaits, driven from plain code: the handle is dropped at once
// and the loop alone keeps each task alive until it ends.
BOOST_AUTO_TEST_CASE(task_spawn_detached_batches) {
  constexpr int kBatch = 50;
  int hits = 0;
  int* p = &hits;
  bool stuck = false;
  auto batch = [&] {
    int target = hits + kBatch;
    for (int i = 0; i < kBatch; ++i) loop.create_task([p] { ++*p; });
    for (int spins = 0; hits < target && spins < 100; ++spins) loop.run_once();
    stuck = stuck || hits != target;
  };
  repeat(kWarmup / kBatch, batch);
  HeapUse use = measure_heap_use([&] { repeat(kCounted / kBatch, batch); });
  BOOST_TEST(!stuck);
  BOOST_TEST(hits == (kWarmup + kCounted) / kBatch * kBatch);
  BOOST_TEST(loop.all_tasks().empty());
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(reader_wakeups) {
  int fds[2];
  BOOST_REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  struct Close {
    int* fds;
    ~Close() {
      ::close(fds[0]);
      ::close(fds[1]);
    }
  } close_fds{fds};
  const char seed[4] = {'a', 'b', 'c', 'd'};
  BOOST_REQUIRE(::write(fds[1], seed, sizeof seed) == static_cast<ssize_t>(sizeof seed));

  int wakeups = 0;
  int failures = 0;
  int* w = &wakeups;
  int* f = &failures;
  int rfd = fds[0];
  int wfd = fds[1];
  // Level-triggered: the pipe never runs dry, so every iteration wakes the reader.
  loop.add_reader(rfd, [w, f, rfd, wfd] {
    char c;
    if (::read(rfd, &c, 1) != 1) ++*f;
    if (::write(wfd, &c, 1) != 1) ++*f;
    ++*w;
  });
  repeat(kWarmup, [&] { loop.run_once(); });
  HeapUse use = measure_heap_use([&] { repeat(kCounted, [&] { loop.run_once(); }); });
  BOOST_TEST(loop.remove_reader(rfd));
  BOOST_TEST(failures == 0);
  BOOST_TEST(wakeups == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

// Socket reads and writes over the loop's readiness waits (net/socket.hpp,
// net/streams.hpp): a ping-pong between two tasks over a socketpair, so every
// round trip parks and wakes both tasks through epoll.
BOOST_AUTO_TEST_CASE(socket_round_trips_over_readiness_waits) {
  namespace net = fiberloop::net;
  int sv[2];
  BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  net::Socket a = net::Socket::adopt(sv[0]);
  net::Socket b = net::Socket::adopt(sv[1]);
  long echoed = 0;
  HeapUse use = run([&] {
    auto ponger = fiberloop::spawn([&] {
      char buf[64];
      while (std::size_t n = net::sock_recv_into(b, buf, sizeof buf)) {
        net::sock_sendall(b, std::string_view(buf, n));
        echoed += static_cast<long>(n);
      }
    });
    char msg[64] = "ping", back[64];
    auto once = [&] {
      net::sock_sendall(a, std::string_view(msg, sizeof msg));
      std::size_t got = 0;
      while (got < sizeof back) got += net::sock_recv_into(a, back + got, sizeof back - got);
    };
    repeat(kWarmup, once);
    HeapUse u = measure_heap_use([&] { repeat(kCounted, once); });
    a.shutdown(SHUT_WR);
    fiberloop::await(ponger);
    return u;
  });
  BOOST_TEST(echoed == 64L * (kWarmup + kCounted));
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(stream_round_trips) {
  namespace net = fiberloop::net;
  int sv[2];
  BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  long echoed = 0;
  HeapUse use = run([&] {
    auto [ra, wa] = net::open_streams(net::Socket::adopt(sv[0]));
    auto [rb, wb] = net::open_streams(net::Socket::adopt(sv[1]));
    auto ponger = fiberloop::spawn([&, rb = rb, wb = wb]() mutable {
      char buf[64];
      while (std::size_t n = rb.read_into(buf, sizeof buf)) {
        wb.write(std::string_view(buf, n));
        wb.drain();
        echoed += static_cast<long>(n);
      }
    });
    char msg[64] = "ping", back[64];
    auto once = [&] {
      wa.write(std::string_view(msg, sizeof msg));
      wa.drain();
      std::size_t got = 0;
      while (got < sizeof back) got += ra.read_into(back + got, sizeof back - got);
    };
    repeat(kWarmup, once);
    HeapUse u = measure_heap_use([&] { repeat(kCounted, once); });
    wa.write_eof();
    fiberloop::await(ponger);
    return u;
  });
  BOOST_TEST(echoed == 64L * (kWarmup + kCounted));
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_SUITE_END()

// The synchronisation primitives and queues (issue 9): their fast path, when
// nobody has to wait, makes no allocation. Reopens the suite above.
BOOST_FIXTURE_TEST_SUITE(alloc, LoopFixture, *boost::unit_test::precondition(not_under_valgrind))

BOOST_AUTO_TEST_CASE(lock_uncontended) {
  int held = 0;
  HeapUse use = run([&] {
    fiberloop::Lock lock;
    auto once = [&] {
      std::lock_guard guard(lock);
      held += lock.locked();
    };
    return steady_state_heap_use(once);
  });
  BOOST_TEST(held == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

BOOST_AUTO_TEST_CASE(semaphore_event_condition_uncontended) {
  int passes = 0;
  HeapUse use = run([&] {
    fiberloop::BoundedSemaphore sem(2);
    fiberloop::Event event;
    fiberloop::Condition cond;
    auto once = [&] {
      sem.acquire();
      event.set();
      event.wait();
      event.clear();
      {
        std::lock_guard guard(cond);
        cond.notify_all();
      }
      sem.release();
      ++passes;
    };
    return steady_state_heap_use(once);
  });
  BOOST_TEST(passes == kWarmup + kCounted);
  CHECK_NO_HEAP_USE(use);
}

// A queue with room: put/get and the nowait forms, with task_done/join.
BOOST_AUTO_TEST_CASE(queue_put_get_with_room) {
  long sum = 0;
  HeapUse use = run([&] {
    fiberloop::Queue<int> fifo(64);
    fiberloop::LifoQueue<int> lifo(64);
    fiberloop::PriorityQueue<int> prio(64);
    auto once = [&] {
      for (int i = 0; i < 3; ++i) fifo.put(i);
      fifo.put_nowait(3);
      lifo.put(4);
      prio.put_nowait(5);
      for (int i = 0; i < 3; ++i) sum += fifo.get();
      sum += fifo.get_nowait() + lifo.get() + prio.get_nowait();
      for (int i = 0; i < 4; ++i) fifo.task_done();
      lifo.task_done();
      prio.task_done();
      fifo.join();
    };
    return steady_state_heap_use(once);
  });
  BOOST_TEST(sum == 15L * (kWarmup + kCounted));
  CHECK_NO_HEAP_USE(use);
}

// The task dump allocates a handful of blocks whatever the number of tasks
// (its indexes, the symbol tables of each object file, the demangler's
// buffer), none per task: the same count for 100 parked tasks as for 5,000.
BOOST_AUTO_TEST_CASE(task_dump_allocates_nothing_per_task) {
  auto dump_heap_use = [this](int n, fiberloop::DumpFormat format) {
    return run([&] {
      std::vector<fiberloop::Task<void>> parked;
      for (int i = 0; i < n; ++i) parked.push_back(fiberloop::spawn([] { fiberloop::sleep(1000); }));
      fiberloop::sleep(0);  // every one has parked on its sleep
      DiscardStream sink;
      std::ostream out(&sink);
      HeapUse use = measure_heap_use([&] { loop.dump_tasks(out, format); }, true);
      BOOST_TEST(sink.written > static_cast<std::size_t>(n) * 100);  // it did write them all
      for (auto& t : parked) t.cancel();
      fiberloop::sleep(0);
      return use.allocations;
    });
  };
  for (auto format : {fiberloop::DumpFormat::text, fiberloop::DumpFormat::json}) {
    std::size_t few = dump_heap_use(100, format);
    std::size_t many = dump_heap_use(5000, format);
    BOOST_TEST(few < 64u);
    BOOST_TEST(many == few);
  }
}

BOOST_AUTO_TEST_SUITE_END()
