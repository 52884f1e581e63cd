// run_in_executor / to_thread and ThreadPoolExecutor, after CPython's
// test_asyncio/test_threads.py and the executor parts of test_base_events.py.
// Threads meet only through Completers, joins, mutexes and atomics, so the
// suite is meant to be ThreadSanitizer-clean.
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::EventLoop;
using fiberloop::Future;
using fiberloop::RuntimeError;
using fiberloop::ThreadPoolExecutor;

namespace {

// Gate is a one-shot latch a test opens from the loop thread for a worker.
struct Gate {
  std::atomic<bool> open{false};
  // wait() spins politely until opened; false after `limit` (a test bug).
  bool wait(std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) const {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!open.load()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  }
};

struct Dropped {
  static inline std::atomic<int> destroyed{0};
  bool live = true;
  Dropped() = default;
  Dropped(Dropped&& o) noexcept : live(std::exchange(o.live, false)) {}
  ~Dropped() {
    if (live) destroyed.fetch_add(1);
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(executor, LoopFixture)

BOOST_AUTO_TEST_CASE(run_in_executor_runs_fn_on_a_worker_and_completes_on_the_loop) {
  std::thread::id fn_on, done_on;
  auto fut = loop.run_in_executor([&] {
    fn_on = std::this_thread::get_id();
    return 6 * 7;
  });
  fut.add_done_callback([&](const Future<int>&) { done_on = std::this_thread::get_id(); });
  auto guard = loop.call_later(5.0, [&] { loop.stop(); });
  int v = loop.run_until_complete(fut);
  guard.cancel();
  BOOST_TEST(v == 42);
  BOOST_TEST((fn_on != std::this_thread::get_id()));  // read after the Completer's post
  BOOST_TEST((done_on == std::this_thread::get_id()));
}

BOOST_AUTO_TEST_CASE(to_thread_returns_the_value_and_passes_arguments_like_std_thread) {
  int shared = 0;
  auto out = run([&] {
    auto owned = fiberloop::to_thread(
        [](std::unique_ptr<int> p, std::string s) { return s + std::to_string(*p); },
        std::make_unique<int>(5), std::string("n="));
    fiberloop::to_thread([](int& r) { r = 9; }, std::ref(shared));
    return owned;
  });
  BOOST_TEST(out == "n=5");
  BOOST_TEST(shared == 9);
}

BOOST_AUTO_TEST_CASE(an_exception_from_fn_reaches_the_awaiting_task) {
  std::string got = run([] {
    try {
      fiberloop::to_thread([]() -> int { throw std::out_of_range("from the worker"); });
      return std::string("nothing thrown");
    } catch (const std::out_of_range& e) {
      return std::string(e.what());
    }
  });
  BOOST_TEST(got == "from the worker");
  // The loop and its pool keep working afterwards.
  BOOST_TEST(run([] { return fiberloop::to_thread([] { return 1; }); }) == 1);
}

BOOST_AUTO_TEST_CASE(the_loop_keeps_running_while_fn_blocks) {
  Gate gate;
  int ticks = 0;
  auto ticker = loop.create_task([&] {
    while (!gate.open.load()) {
      ++ticks;
      if (ticks == 20) gate.open = true;  // the loop thread opens the worker's gate
      fiberloop::sleep(0);
    }
  });
  bool passed = run([&] { return fiberloop::to_thread([&] { return gate.wait(); }); });
  loop.run_until_complete(ticker);
  BOOST_TEST(passed);
  BOOST_TEST(ticks == 20);
}

BOOST_AUTO_TEST_CASE(cancelling_the_waiting_task_does_not_cancel_fn_and_drops_its_result) {
  Dropped::destroyed = 0;
  Gate gate;
  std::atomic<bool> fn_finished{false};
  auto waiter = loop.create_task([&] {
    fiberloop::to_thread([&] {
      gate.wait();
      fn_finished = true;
      return Dropped();
    });
  });
  loop.call_later(0.01, [&] { waiter.cancel("stop waiting"); });
  auto guard = loop.call_later(5.0, [&] { loop.stop(); });
  BOOST_CHECK_THROW(loop.run_until_complete(waiter), CancelledError);
  BOOST_TEST(!fn_finished.load());  // the task is done, fn still runs
  gate.open = true;
  // Let the worker's outcome arrive and be dropped.
  double until = loop.time() + 5.0;
  while (Dropped::destroyed.load() == 0 && loop.time() < until) {
    loop.call_later(0.001, [] {});
    loop.run_once();
  }
  guard.cancel();
  BOOST_TEST(fn_finished.load());
  BOOST_TEST(Dropped::destroyed.load() == 1);
  BOOST_TEST(reports.empty());
}

BOOST_AUTO_TEST_CASE(a_function_cancelled_before_it_started_never_runs) {
  ThreadPoolExecutor pool(1);
  Gate started, release;
  std::atomic<bool> second_ran{false};
  auto first = loop.run_in_executor(pool, [&] {
    started.open = true;
    release.wait();
    return 1;
  });
  auto second = loop.run_in_executor(pool, [&] {
    second_ran = true;
    return 2;
  });
  BOOST_REQUIRE(started.wait());  // the only worker is busy: the second is queued
  second.cancel();
  loop.call_soon([&] { release.open = true; });  // after the cancellation's callback
  auto guard = loop.call_later(5.0, [&] { loop.stop(); });
  BOOST_TEST(loop.run_until_complete(first) == 1);
  // One worker, FIFO: once a third job ran, the worker has been past the second.
  BOOST_TEST(loop.run_until_complete(loop.run_in_executor(pool, [] { return 3; })) == 3);
  guard.cancel();
  BOOST_TEST(!second_ran.load());
  BOOST_TEST(second.cancelled());
  BOOST_TEST(reports.empty());
}

BOOST_AUTO_TEST_CASE(the_default_pool_is_bounded_as_python_s) {
  std::size_t cores = std::thread::hardware_concurrency();
  BOOST_TEST(ThreadPoolExecutor::default_max_workers() == std::min<std::size_t>(32, cores + 4));
  BOOST_TEST(fiberloop::default_executor(loop).max_workers() ==
             ThreadPoolExecutor::default_max_workers());
  BOOST_CHECK_THROW(ThreadPoolExecutor(0), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(an_explicit_pool_never_runs_more_than_max_workers_at_once) {
  ThreadPoolExecutor pool(2);
  std::atomic<int> running{0}, peak{0};
  auto job = [&] {
    int now = running.fetch_add(1) + 1;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    running.fetch_sub(1);
    return 1;
  };
  int total = run([&] {
    std::vector<Future<int>> futs;
    for (int i = 0; i < 8; ++i) futs.push_back(loop.run_in_executor(pool, job));
    int sum = 0;
    for (auto& f : futs) sum += fiberloop::await(f);
    return sum;
  });
  BOOST_TEST(total == 8);
  BOOST_TEST(peak.load() <= 2);
  BOOST_TEST(pool.thread_count() == 2u);
}

BOOST_AUTO_TEST_CASE(shutdown_drops_queued_jobs_and_waits_for_running_ones) {
  ThreadPoolExecutor pool(1);
  Gate started;
  std::atomic<bool> second_ran{false};
  auto first = fiberloop::run_in_executor(loop, pool, [&] {
    started.open = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    return 1;
  });
  auto second = fiberloop::run_in_executor(loop, pool, [&] {
    second_ran = true;
    return 2;
  });
  BOOST_REQUIRE(started.wait());
  pool.shutdown();  // the first runs: waited for; the second is queued: dropped
  BOOST_CHECK_THROW(fiberloop::run_in_executor(loop, pool, [] { return 3; }), RuntimeError);
  auto guard = loop.call_later(5.0, [&] { loop.stop(); });
  BOOST_TEST(loop.run_until_complete(first) == 1);
  BOOST_CHECK_EXCEPTION(loop.run_until_complete(second), RuntimeError, [](const RuntimeError& e) {
    return std::string(e.what()) ==
           "run_in_executor(): the executor shut down before the function ran";
  });
  guard.cancel();
  BOOST_TEST(!second_ran.load());
}

BOOST_AUTO_TEST_CASE(close_joins_the_default_pool_and_drops_late_results) {
  Dropped::destroyed = 0;
  Gate started;
  std::atomic<bool> finished{false};
  auto fut = loop.run_in_executor([&] {
    started.open = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    finished = true;
    return Dropped();
  });
  BOOST_REQUIRE(started.wait());
  loop.close();  // joins: fn has returned, its result was refused and dropped
  BOOST_TEST(finished.load());
  BOOST_TEST(Dropped::destroyed.load() == 1);
  BOOST_TEST(!fut.done());
  BOOST_CHECK_THROW(loop.run_in_executor([] { return 1; }), RuntimeError);
}

BOOST_AUTO_TEST_CASE(close_drops_jobs_not_yet_started) {
  const int workers = static_cast<int>(fiberloop::default_executor(loop).max_workers());
  Gate release;
  std::atomic<int> ran{0};
  std::vector<Future<int>> futs;
  // More blocked jobs than threads: the surplus is still queued at close().
  for (int i = 0; i < workers + 3; ++i) {
    futs.push_back(loop.run_in_executor([&] {
      ran.fetch_add(1);
      release.wait();
      return 1;
    }));
  }
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    release.open = true;
  });
  loop.close();
  opener.join();
  BOOST_TEST(ran.load() <= workers);  // the pool is gone with close()
  for (auto& f : futs) BOOST_TEST(!f.done());
}

BOOST_AUTO_TEST_CASE(destroying_a_loop_with_work_in_flight_is_clean) {
  for (int round = 0; round < 10; ++round) {
    auto own = std::make_unique<EventLoop>();
    std::atomic<int> ran{0};
    for (int i = 0; i < 8; ++i) {
      own->run_in_executor([&ran] {
        ran.fetch_add(1);
        return std::string(100, 'x');
      });
    }
    for (int i = 0; i < round % 3; ++i) {
      own->call_later(0.001, [] {});  // bounds the iteration's poll
      own->run_once();
    }
    own.reset();  // close(): join, drop, let go of the futures (ASan: no leak)
    BOOST_TEST(ran.load() <= 8);
  }
}

BOOST_AUTO_TEST_CASE(to_thread_outside_a_task_is_refused) {
  BOOST_CHECK_THROW(fiberloop::to_thread([] { return 1; }), RuntimeError);
  BOOST_TEST(run([] { return fiberloop::to_thread([] { return 2; }); }) == 2);
}

BOOST_AUTO_TEST_CASE(many_tasks_share_the_pool) {
  long total = run([&] {
    std::vector<fiberloop::Task<long>> tasks;
    for (int t = 0; t < 20; ++t) {
      tasks.push_back(fiberloop::spawn([t] {
        long s = 0;
        for (int i = 0; i < 10; ++i)
          s += fiberloop::to_thread([](int a, int b) { return a * b; }, t, i);
        return s;
      }));
    }
    long sum = 0;
    for (auto& task : tasks) sum += fiberloop::await(task);
    return sum;
  });
  BOOST_TEST(total == 190L * 45L);
}

BOOST_AUTO_TEST_SUITE_END()
