// Completer<T>: completing a Future from other threads without touching it there.
// Every cross-thread exchange below goes through the Completer, a std::thread
// start/join or an atomic, so the suite is meant to be ThreadSanitizer-clean.
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::Completer;
using fiberloop::EventLoop;
using fiberloop::Future;
using fiberloop::InvalidStateError;
using fiberloop::RuntimeError;

namespace {

// Tracked counts its destructions of live (not moved-from) values and where
// the last one happened.
struct Tracked {
  static inline std::atomic<int> destroyed{0};
  static inline std::atomic<std::thread::id> destroyed_on{};
  int value;
  bool live = true;
  explicit Tracked(int v) : value(v) {}
  Tracked(Tracked&& o) noexcept : value(o.value), live(std::exchange(o.live, false)) {}
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() {
    if (!live) return;
    destroyed_on.store(std::this_thread::get_id());
    destroyed.fetch_add(1);
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(completer, LoopFixture)

BOOST_AUTO_TEST_CASE(set_result_on_a_worker_completes_the_future_on_the_loop_thread) {
  auto fut = loop.create_future<int>();
  std::thread::id completed_on;
  fut.add_done_callback([&](const Future<int>&) { completed_on = std::this_thread::get_id(); });
  std::atomic<bool> posted{false};
  std::thread worker([c = Completer<int>(fut), &posted]() mutable { posted = c.set_result(42); });
  auto guard = loop.call_later(5.0, [&] { loop.stop(); });
  int v = loop.run_until_complete(fut);
  guard.cancel();
  worker.join();
  BOOST_TEST(v == 42);
  BOOST_TEST(posted.load());
  BOOST_TEST((completed_on == std::this_thread::get_id()));
}

BOOST_AUTO_TEST_CASE(a_task_awaits_values_exceptions_void_and_move_only_results) {
  std::vector<std::thread> workers;
  std::string log = run([&] {
    auto a = loop.create_future<std::string>();
    auto b = loop.create_future<void>();
    auto c = loop.create_future<std::unique_ptr<int>>();
    auto d = loop.create_future<int>();
    workers.emplace_back([ca = Completer<std::string>(a), cb = Completer<void>(b),
                          cc = Completer<std::unique_ptr<int>>(c),
                          cd = Completer<int>(d)]() mutable {
      cc.set_result(std::make_unique<int>(7));
      cb.set_result();
      cd.set_exception(std::runtime_error("worker failed"));
      ca.set_result("text");
    });
    std::string out = fiberloop::await(a);
    fiberloop::await(b);
    out += " " + std::to_string(*fiberloop::await(c));
    try {
      fiberloop::await(d);
      out += " no exception";
    } catch (const std::runtime_error& e) {
      out += std::string(" ") + e.what();
    }
    return out;
  });
  for (auto& w : workers) w.join();
  BOOST_TEST(log == "text 7 worker failed");
}

BOOST_AUTO_TEST_CASE(a_completer_completes_once_and_is_move_only) {
  auto fut = loop.create_future<int>();
  Completer<int> c(fut);
  BOOST_TEST(c.valid());
  Completer<int> moved = std::move(c);
  BOOST_TEST(!c.valid());  // NOLINT: testing the moved-from state
  BOOST_CHECK_THROW(c.set_result(1), InvalidStateError);
  BOOST_CHECK_THROW(moved.set_exception(std::exception_ptr()), std::invalid_argument);
  BOOST_TEST(moved.valid());  // a refused null exception leaves it usable
  BOOST_TEST(moved.set_result(5));
  BOOST_TEST(!moved.valid());
  BOOST_CHECK_THROW(moved.set_result(6), InvalidStateError);
  BOOST_CHECK_THROW(moved.set_exception(std::runtime_error("x")), InvalidStateError);
  BOOST_TEST(!fut.done());  // nothing happens off the loop's own iteration
  loop.run_once();
  BOOST_TEST(fut.result() == 5);
}

BOOST_AUTO_TEST_CASE(construction_is_refused_for_done_empty_or_closed_futures) {
  auto done = loop.create_future<int>();
  done.set_result(1);
  BOOST_CHECK_THROW(Completer<int>{done}, InvalidStateError);
  BOOST_CHECK_THROW(Completer<int>{Future<int>()}, InvalidStateError);
  auto pending = loop.create_future<int>();
  loop.close();
  BOOST_CHECK_THROW(Completer<int>{pending}, RuntimeError);
}

BOOST_AUTO_TEST_CASE(destroyed_without_completing_on_a_worker_fails_the_future) {
  auto fut = loop.create_future<int>();
  std::thread worker([c = Completer<int>(fut)] {});  // dies unused on the worker
  worker.join();
  auto guard = loop.call_later(5.0, [&] { loop.stop(); });
  BOOST_CHECK_EXCEPTION(loop.run_until_complete(fut), RuntimeError, [](const RuntimeError& e) {
    return std::string(e.what()) == "Completer destroyed without completing the future";
  });
  guard.cancel();
}

BOOST_AUTO_TEST_CASE(an_outcome_for_a_cancelled_future_is_dropped_on_the_loop_thread) {
  Tracked::destroyed = 0;
  auto fut = loop.create_future<Tracked>();
  Completer<Tracked> c(fut);
  fut.cancel("gave up");
  std::thread worker([c = std::move(c)]() mutable { c.set_result(Tracked(3)); });
  worker.join();
  BOOST_TEST(Tracked::destroyed.load() == 0);  // carried to the loop, not dropped yet
  loop.run_once();
  BOOST_TEST(Tracked::destroyed.load() == 1);
  BOOST_TEST((Tracked::destroyed_on.load() == std::this_thread::get_id()));
  BOOST_TEST(fut.cancelled());
  BOOST_TEST(reports.empty());
}

BOOST_AUTO_TEST_CASE(an_outcome_for_a_future_completed_meanwhile_is_reported) {
  auto fut = loop.create_future<int>();
  Completer<int> c(fut);
  fut.set_result(1);  // the loop side completed it first: a programming error
  BOOST_TEST(c.set_result(2));
  loop.run_once();  // wakes on the post and runs the delivery
  BOOST_TEST(fut.result() == 1);
  BOOST_REQUIRE(reports.size() == 1u);
  expected_reports = 1;
}

BOOST_AUTO_TEST_CASE(after_close_set_result_returns_false_and_drops_the_value_on_its_thread) {
  Tracked::destroyed = 0;
  auto fut = loop.create_future<Tracked>();
  Completer<Tracked> c(fut);
  loop.close();  // lets go of the pending future: no leak
  std::atomic<bool> posted{true};
  std::thread::id worker_id;
  std::thread worker([&, c = std::move(c)]() mutable {
    worker_id = std::this_thread::get_id();
    posted = c.set_result(Tracked(1));
  });
  worker.join();
  BOOST_TEST(!posted.load());
  BOOST_TEST(Tracked::destroyed.load() == 1);
  BOOST_TEST((Tracked::destroyed_on.load() == worker_id));
  BOOST_TEST(!fut.done());
}

BOOST_AUTO_TEST_CASE(a_completer_may_outlive_its_loop) {
  auto own = std::make_unique<EventLoop>();
  auto fut = own->create_future<int>();
  Completer<int> completes(fut);
  Completer<int> abandons(fut);
  own.reset();  // the loop is gone; the completers must not reach for it
  std::atomic<int> results{-1};
  std::thread worker([&, a = std::move(completes), b = std::move(abandons)]() mutable {
    results = a.set_result(1) ? 1 : 0;
  });  // b dies here, on the worker, after its loop
  worker.join();
  BOOST_TEST(results.load() == 0);
  BOOST_CHECK_THROW(fut.get_loop(), RuntimeError);
}

BOOST_AUTO_TEST_CASE(a_completer_unwound_with_its_task_at_close_is_clean) {
  // close() unwinds a pending task whose frame holds a completer: the
  // completer's post lands in a queue that close() then drops, and close()
  // lets go of the future: no crash, no leak (ASan), no report but the task's.
  auto fut = loop.create_future<int>();
  int unwound = 0;
  loop.create_task([&] {
    Counted mark(unwound);
    Completer<int> c(fut);
    fiberloop::await(loop.create_future<void>());  // never completed
  });
  loop.run_once();
  BOOST_TEST(unwound == 0);
  loop.close();
  BOOST_TEST(unwound == 1);
  BOOST_TEST(!fut.done());
  BOOST_TEST(reports.size() == 1u);  // "Task was destroyed but it is pending!"
  expected_reports = reports.size();
}

BOOST_AUTO_TEST_CASE(many_threads_complete_many_futures) {
  static constexpr int kThreads = 4;
  static constexpr int kPerThread = 250;
  std::vector<Future<int>> futures;
  std::vector<std::vector<Completer<int>>> batches(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      futures.push_back(loop.create_future<int>());
      batches[t].emplace_back(futures.back());
    }
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([t, batch = std::move(batches[t])]() mutable {
      for (int i = 0; i < kPerThread; ++i) {
        if (i % 50 == 49) continue;  // abandoned: fails its future
        batch[i].set_result(t * kPerThread + i);
      }
    });
  }
  long sum = run([&] {
    long s = 0;
    for (auto& f : futures) {
      try {
        s += fiberloop::await(f);
      } catch (const RuntimeError&) {
        s -= 1;
      }
    }
    return s;
  });
  for (auto& w : workers) w.join();
  long expected = 0;
  for (int k = 0; k < kThreads * kPerThread; ++k) expected += (k % 50 == 49) ? -1 : k;
  BOOST_TEST(sum == expected);
}

BOOST_AUTO_TEST_CASE(completions_racing_the_loop_closing_never_crash) {
  // Workers complete while the loop runs, closes and is destroyed: each
  // set_result either lands (true) or is refused (false), nothing else.
  for (int round = 0; round < 20; ++round) {
    auto own = std::make_unique<EventLoop>();
    own->set_exception_handler([](EventLoop&, const fiberloop::ExceptionContext&) {});
    std::vector<Future<int>> futures;
    std::vector<Completer<int>> completers;
    for (int i = 0; i < 40; ++i) {
      futures.push_back(own->create_future<int>());
      completers.emplace_back(futures.back());
    }
    std::atomic<int> landed{0}, refused{0};
    std::thread worker([&, cs = std::move(completers)]() mutable {
      for (auto& c : cs) (c.set_result(1) ? landed : refused).fetch_add(1);
    });
    for (int i = 0; i < round % 4; ++i) {
      own->call_later(0.001, [] {});  // bounds the iteration's poll
      own->run_once();
    }
    own.reset();
    worker.join();
    BOOST_TEST(landed.load() + refused.load() == 40);
  }
}

BOOST_AUTO_TEST_CASE(debug_mode_refuses_a_completer_made_on_another_thread) {
  // The right pattern makes the completer on the loop thread; in debug mode,
  // making one elsewhere while the loop runs is caught before the future is
  // touched.
  loop.set_debug(true);
  auto fut = loop.create_future<int>();
  std::string error;
  std::thread worker;
  loop.call_soon([&] {
    worker = std::thread([&] {
      try {
        Completer<int> c(fut);
      } catch (const RuntimeError& e) {
        error = e.what();
      }
      loop.call_soon_threadsafe([&] { loop.stop(); });
    });
  });
  run_bounded();
  worker.join();
  BOOST_TEST(error.find("other than the current one") != std::string::npos, error);
}

BOOST_AUTO_TEST_SUITE_END()
