// wait_test.cpp: wait, wait_for, as_completed and shield, after CPython's
// test_asyncio/test_tasks.py and test_waitfor.py.
#include <boost/test/unit_test.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::Future;
using fiberloop::ReturnWhen;
using fiberloop::Task;
using fiberloop::TimeoutError;

namespace {

void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}

Task<int> sleeper(double seconds, int value) {
  return fiberloop::spawn([=] {
    fiberloop::sleep(seconds);
    return value;
  });
}

// names(fs, all) lists which of `all` are in fs, by their index.
template <class F>
std::string indices(const std::vector<F>& fs, const std::vector<F>& all) {
  std::string s;
  for (auto& f : fs) {
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (all[i] == f) s += std::to_string(i);
    }
  }
  return s;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(wait, LoopFixture)

// test_wait: all_completed returns when everything is done.
BOOST_AUTO_TEST_CASE(all_completed) {
  run([&] {
    std::vector<Task<int>> ts{sleeper(0.002, 1), sleeper(0.001, 2)};
    auto [done, pending] = fiberloop::wait(ts);
    BOOST_TEST(indices(done, ts) == "01");
    BOOST_TEST(pending.empty());
  });
}

// test_wait_first_completed
BOOST_AUTO_TEST_CASE(first_completed) {
  run([&] {
    auto fut = loop.create_future<int>();
    std::vector<Future<int>> fs{fut, sleeper(0.001, 2)};
    auto [done, pending] = fiberloop::wait(fs, ReturnWhen::first_completed);
    BOOST_TEST(indices(done, fs) == "1");
    BOOST_TEST(indices(pending, fs) == "0");
    BOOST_TEST(!fut.done());  // not cancelled
    fut.set_result(0);
  });
}

// test_wait_really_done: futures done together are all reported done.
BOOST_AUTO_TEST_CASE(first_completed_reports_all_done) {
  run([&] {
    auto a = loop.create_future<int>();
    auto b = loop.create_future<int>();
    loop.call_soon([=] {
      a.set_result(1);
      b.set_result(2);
    });
    std::vector<Future<int>> fs{a, b};
    auto [done, pending] = fiberloop::wait(fs, ReturnWhen::first_completed);
    BOOST_TEST(done.size() == 2u);
    BOOST_TEST(pending.empty());
  });
}

// test_wait_first_exception
BOOST_AUTO_TEST_CASE(first_exception) {
  run([&] {
    auto slow = sleeper(10, 1);
    auto failing = fiberloop::spawn([]() -> int { throw std::runtime_error("bad"); });
    std::vector<Task<int>> ts{slow, failing};
    auto [done, pending] = fiberloop::wait(ts, std::nullopt, ReturnWhen::first_exception);
    BOOST_TEST(indices(done, ts) == "1");
    BOOST_TEST(indices(pending, ts) == "0");
    BOOST_TEST(what_of(failing.exception()) == "bad");
    slow.cancel();
    BOOST_CHECK_THROW(fiberloop::await(slow), CancelledError);
  });
}

// test_wait_first_exception without any exception: waits for all.
BOOST_AUTO_TEST_CASE(first_exception_without_exception_waits_for_all) {
  run([&] {
    std::vector<Task<int>> ts{sleeper(0.001, 1), sleeper(0.002, 2)};
    auto [done, pending] = fiberloop::wait(ts, std::nullopt, ReturnWhen::first_exception);
    BOOST_TEST(done.size() == 2u);
    BOOST_TEST(pending.empty());
  });
}

// test_wait_with_timeout: returns at the timeout, nothing cancelled.
BOOST_AUTO_TEST_CASE(timeout_leaves_pending) {
  run([&] {
    auto slow = sleeper(10, 1);
    std::vector<Task<int>> ts{sleeper(0.001, 2), slow};
    auto [done, pending] = fiberloop::wait(ts, 0.1);
    BOOST_TEST(indices(done, ts) == "0");
    BOOST_TEST(indices(pending, ts) == "1");
    BOOST_TEST(!slow.done());
    slow.cancel();
    BOOST_CHECK_THROW(fiberloop::await(slow), CancelledError);
  });
}

// test_wait_errors / test_wait_duplicate_coroutines
BOOST_AUTO_TEST_CASE(empty_and_duplicates) {
  run([&] {
    std::vector<Future<int>> none;
    BOOST_CHECK_THROW(fiberloop::wait(none), std::invalid_argument);
    auto a = loop.create_future<int>();
    loop.call_soon([a] { a.set_result(1); });
    std::vector<Future<int>> twice{a, a};
    auto [done, pending] = fiberloop::wait(twice);
    BOOST_TEST(done.size() == 1u);
  });
}

// Cancelling a task that waits in wait() leaves the futures running.
BOOST_AUTO_TEST_CASE(cancelled_waiter_leaves_futures_alone) {
  run([&] {
    auto fut = loop.create_future<int>();
    auto waiter = fiberloop::spawn([&] {
      std::vector<Future<int>> fs{fut};
      fiberloop::wait(fs);
    });
    run_briefly();
    waiter.cancel();
    BOOST_CHECK_THROW(fiberloop::await(waiter), CancelledError);
    BOOST_TEST(!fut.done());
    fut.set_result(1);
    run_briefly();
  });
}

// test_wait_for: the inner task is cancelled and waited for before the
// TimeoutError (test_wait_for_waits_for_task_cancellation).
BOOST_AUTO_TEST_CASE(wait_for_timeout_waits_for_the_cancellation) {
  Log log;
  run([&] {
    auto inner = fiberloop::spawn([&] {
      try {
        fiberloop::sleep(10);
      } catch (const CancelledError&) {
        log.push_back("inner cancelled");
        fiberloop::sleep(0.001);
        log.push_back("inner done");
        throw;
      }
    });
    try {
      fiberloop::wait_for(inner, 0.001);
    } catch (const TimeoutError&) {
      log.push_back("TimeoutError");
    }
    BOOST_TEST(inner.cancelled());
    BOOST_TEST(fiberloop::current_task()->cancelling() == 0);
  });
  BOOST_TEST(log == (Log{"inner cancelled", "inner done", "TimeoutError"}),
             boost::test_tools::per_element());
}

// test_wait_for_race_condition: completes before the timeout.
BOOST_AUTO_TEST_CASE(wait_for_result_before_timeout) {
  run([&] {
    auto fut = loop.create_future<std::string>();
    loop.call_later(0.001, [fut] { fut.set_result("ok"); });
    BOOST_TEST(fiberloop::wait_for(fut, 1.0) == "ok");
    BOOST_TEST(fiberloop::wait_for(fut, std::nullopt) == "ok");
  });
}

// 3.12: a result produced in answer to the cancellation wins.
BOOST_AUTO_TEST_CASE(wait_for_result_with_cancellation_wins) {
  run([&] {
    auto inner = fiberloop::spawn([] {
      try {
        fiberloop::sleep(10);
      } catch (const CancelledError&) {
        return 42;
      }
      return 0;
    });
    BOOST_TEST(fiberloop::wait_for(inner, 0.001) == 42);
  });
}

// test_wait_for_reraises_exception_during_cancellation
BOOST_AUTO_TEST_CASE(wait_for_reraises_exception_during_cancellation) {
  run([&] {
    auto inner = fiberloop::spawn([] {
      try {
        fiberloop::sleep(10);
      } catch (const CancelledError&) {
      }
      throw std::logic_error("foo");
    });
    BOOST_CHECK_THROW(fiberloop::wait_for(inner, 0.001), std::logic_error);
  });
}

// test_wait_for_timeout_less_then_0_or_0_*
BOOST_AUTO_TEST_CASE(wait_for_zero_timeout) {
  run([&] {
    auto done = loop.create_future<int>();
    done.set_result(5);
    int ticks = 0;
    loop.call_soon([&] { ++ticks; });
    BOOST_TEST(fiberloop::wait_for(done, 0) == 5);
    BOOST_TEST(ticks == 0);  // no yield
    auto not_done = sleeper(10, 1);
    BOOST_CHECK_THROW(fiberloop::wait_for(not_done, -1), TimeoutError);
    BOOST_TEST(not_done.cancelled());
    bool ran = false;
    BOOST_CHECK_THROW(fiberloop::wait_for([&] { ran = true; }, 0), TimeoutError);
    BOOST_TEST(!ran);
  });
}

// test_cancel_wait_for: cancelling the waiter cancels the inner task too.
BOOST_AUTO_TEST_CASE(wait_for_cancelled_waiter_cancels_inner) {
  run([&] {
    auto inner = sleeper(10, 1);
    auto waiter = fiberloop::spawn([&] { return fiberloop::wait_for(inner, 5.0); });
    run_briefly();
    waiter.cancel();
    BOOST_CHECK_THROW(fiberloop::await(waiter), CancelledError);
    BOOST_TEST(inner.cancelled());
  });
}

BOOST_AUTO_TEST_CASE(wait_for_callable_runs_in_place) {
  run([&] {
    auto self = fiberloop::current_task();
    int v = fiberloop::wait_for(
        [&] {
          BOOST_TEST((fiberloop::current_task() == self));
          fiberloop::sleep(0);
          return 3;
        },
        1.0);
    BOOST_TEST(v == 3);
    BOOST_CHECK_THROW(fiberloop::wait_for([] { fiberloop::sleep(10); }, 0.001), TimeoutError);
  });
}

// test_as_completed: completion order, the futures themselves.
BOOST_AUTO_TEST_CASE(as_completed_in_completion_order) {
  std::vector<int> order;
  run([&] {
    std::vector<Task<int>> ts{sleeper(0.03, 1), sleeper(0.01, 2), sleeper(0.02, 3)};
    for (auto& t : fiberloop::as_completed(ts)) order.push_back(t.result());
  });
  BOOST_TEST(order == (std::vector<int>{2, 3, 1}), boost::test_tools::per_element());
}

// test_as_completed_with_timeout: the rest throw TimeoutError.
BOOST_AUTO_TEST_CASE(as_completed_timeout) {
  Log log;
  run([&] {
    auto slow = sleeper(10, 1);
    std::vector<Task<int>> ts{slow, sleeper(0.001, 2)};
    auto it = fiberloop::as_completed(ts, 0.1);
    BOOST_TEST(it.left() == 2u);
    log.push_back(std::to_string(it.next().result()));
    try {
      it.next();
    } catch (const TimeoutError&) {
      log.push_back("TimeoutError");
    }
    BOOST_TEST(it.left() == 0u);
    BOOST_CHECK_THROW(it.next(), std::out_of_range);
    BOOST_TEST(!slow.done());
    slow.cancel();
    BOOST_CHECK_THROW(fiberloop::await(slow), CancelledError);
  });
  BOOST_TEST(log == (Log{"2", "TimeoutError"}), boost::test_tools::per_element());
}

// test_as_completed_duplicate_coroutines / done futures come out at once.
BOOST_AUTO_TEST_CASE(as_completed_duplicates_and_done) {
  run([&] {
    auto a = loop.create_future<int>();
    a.set_result(1);
    std::vector<Future<int>> fs{a, a};
    int n = 0;
    for (auto& f : fiberloop::as_completed(fs)) n += f.result();
    BOOST_TEST(n == 1);
  });
}

// test_shield_result / exception / cancel_inner
BOOST_AUTO_TEST_CASE(shield_follows_inner) {
  run([&] {
    auto inner = loop.create_future<int>();
    auto outer = fiberloop::shield(inner);
    loop.call_soon([inner] { inner.set_result(42); });
    BOOST_TEST(fiberloop::await(outer) == 42);

    auto bad = loop.create_future<int>();
    auto outer_bad = fiberloop::shield(bad);
    bad.set_exception(std::runtime_error("bad"));
    BOOST_CHECK_THROW(fiberloop::await(outer_bad), std::runtime_error);

    auto gone = loop.create_future<int>();
    auto outer_gone = fiberloop::shield(gone);
    gone.cancel();
    BOOST_CHECK_THROW(fiberloop::await(outer_gone), CancelledError);
    BOOST_TEST(outer_gone.cancelled());

    auto done = loop.create_future<int>();
    done.set_result(1);
    BOOST_TEST((fiberloop::shield(done) == done));
  });
}

// test_shield_effect: cancelling the task awaiting the shield leaves the
// inner task running to its end.
BOOST_AUTO_TEST_CASE(shield_effect) {
  int proof = 0;
  run([&] {
    auto waiter = loop.create_future<void>();
    auto inner = fiberloop::spawn([&] {
      fiberloop::await(waiter);
      proof += 1;
    });
    auto outer = fiberloop::spawn([&] {
      fiberloop::await(fiberloop::shield(inner));
      proof += 100;
    });
    run_briefly();
    outer.cancel();
    BOOST_CHECK_THROW(fiberloop::await(outer), CancelledError);
    waiter.set_result();
    fiberloop::await(inner);
  });
  BOOST_TEST(proof == 1);
}

// test_shield_cancel_outer
BOOST_AUTO_TEST_CASE(shield_cancel_outer) {
  run([&] {
    auto inner = loop.create_future<int>();
    auto outer = fiberloop::shield(inner);
    run_briefly();
    outer.cancel();
    run_briefly();
    BOOST_TEST(outer.cancelled());
    BOOST_TEST(!inner.done());
    inner.set_result(1);
    run_briefly();
  });
}

BOOST_AUTO_TEST_SUITE_END()
