// gather_test.cpp: gather(), after CPython's test_asyncio/test_tasks.py
// GatherTestsBase / FutureGatherTests / CoroutineGatherTests.
#include <boost/test/unit_test.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::Future;
using fiberloop::Outcome;
using fiberloop::RuntimeError;
using fiberloop::Task;

namespace {
void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}
}  // namespace

BOOST_FIXTURE_TEST_SUITE(gather, LoopFixture)

// test_constructor_empty_sequence
BOOST_AUTO_TEST_CASE(empty) {
  std::tuple<> none = fiberloop::gather();
  (void)none;
  std::vector<Future<int>> no_futures;
  BOOST_TEST(fiberloop::gather(no_futures).empty());
}

// test_result: a tuple in argument order, whatever the completion order.
BOOST_AUTO_TEST_CASE(result_in_argument_order) {
  run([&] {
    auto a = loop.create_future<int>();
    auto b = loop.create_future<std::string>();
    auto c = loop.create_future<void>();
    loop.call_soon([=] {
      c.set_result();
      b.set_result("b");
      a.set_result(1);
    });
    auto [ra, rb, rc] = fiberloop::gather(a, b, c);
    BOOST_TEST(ra == 1);
    BOOST_TEST(rb == "b");
    static_assert(std::is_same_v<decltype(rc), std::monostate>);
  });
}

BOOST_AUTO_TEST_CASE(range_of_tasks_and_callables) {
  run([&] {
    std::vector<Task<int>> tasks;
    for (int i = 0; i < 5; ++i) {
      tasks.push_back(fiberloop::spawn([i] {
        fiberloop::sleep(0.001 * (5 - i));
        return i * i;
      }));
    }
    std::vector<int> r = fiberloop::gather(tasks);
    BOOST_TEST(r == (std::vector<int>{0, 1, 4, 9, 16}), boost::test_tools::per_element());
    auto [x, y] = fiberloop::gather([] { return 1; }, [] { return std::string("two"); });
    BOOST_TEST(x == 1);
    BOOST_TEST(y == "two");
  });
}

// Duplicates count once and give their result at each place.
BOOST_AUTO_TEST_CASE(duplicate_futures) {
  run([&] {
    auto a = loop.create_future<int>();
    loop.call_soon([a] { a.set_result(5); });
    auto [x, y] = fiberloop::gather(a, a);
    BOOST_TEST(x == 5);
    BOOST_TEST(y == 5);
    std::vector<Future<int>> v{a, a, a};
    BOOST_TEST(fiberloop::gather(v).size() == 3u);
  });
}

BOOST_AUTO_TEST_CASE(move_only_results) {
  run([&] {
    auto t = fiberloop::spawn([] { return std::make_unique<int>(9); });
    auto [p] = fiberloop::gather(t);
    BOOST_TEST(*p == 9);
  });
}

// test_one_exception: the first exception propagates at once; the others
// keep running, and their later failures are not reported as unretrieved.
BOOST_AUTO_TEST_CASE(first_exception_propagates_others_keep_running) {
  Log log;
  run([&] {
    auto a = loop.create_future<int>();
    auto b = loop.create_future<int>();
    auto c = loop.create_future<int>();
    loop.call_soon([=] { b.set_exception(std::runtime_error("b failed")); });
    try {
      fiberloop::gather(a, b, c);
    } catch (const std::runtime_error& e) {
      log.push_back(e.what());
    }
    BOOST_TEST(!a.done());
    BOOST_TEST(!c.done());
    a.set_result(1);
    c.set_exception(std::runtime_error("c failed"));
    run_briefly();
  });
  BOOST_TEST(log == (Log{"b failed"}), boost::test_tools::per_element());
}

// test_return_exceptions
BOOST_AUTO_TEST_CASE(return_exceptions) {
  run([&] {
    auto a = loop.create_future<int>();
    auto b = loop.create_future<int>();
    auto c = loop.create_future<void>();
    auto d = loop.create_future<int>();
    loop.call_soon([=] {
      a.set_result(1);
      b.set_exception(std::runtime_error("b"));
      c.cancel("c gone");
      d.set_result(4);
    });
    auto [ra, rb, rc, rd] = fiberloop::gather(a, b, c, d, fiberloop::return_exceptions);
    BOOST_TEST(ra.has_value());
    BOOST_TEST(ra.value() == 1);
    BOOST_TEST(!rb.has_value());
    BOOST_TEST(what_of(rb.exception()) == "b");
    BOOST_CHECK_THROW(rb.value(), std::runtime_error);
    BOOST_TEST(what_of(rc.exception()) == "CancelledError: c gone");
    BOOST_TEST(rd.value() == 4);
    std::vector<Future<int>> v{a, b, d};
    auto all = fiberloop::gather(v, fiberloop::return_exceptions);
    BOOST_TEST(all.size() == 3u);
    BOOST_TEST(!all[1].has_value());
  });
}

// test_one_cancellation: a cancelled child makes gather throw CancelledError.
BOOST_AUTO_TEST_CASE(child_cancelled) {
  run([&] {
    auto a = loop.create_future<int>();
    auto b = loop.create_future<int>();
    loop.call_soon([=] { b.cancel("b cancelled"); });
    try {
      fiberloop::gather(a, b);
      BOOST_FAIL("no CancelledError");
    } catch (const CancelledError& e) {
      BOOST_TEST(e.message() == "b cancelled");
    }
    // The gather failed, the waiting task goes on: it was not cancelled.
    BOOST_TEST(fiberloop::current_task()->cancelling() == 0);
    a.set_result(0);
  });
}

// test_cancel_gather_1 / _2: cancelling the waiting task cancels the children;
// gather ends once they did, with CancelledError even with return_exceptions.
BOOST_AUTO_TEST_CASE(cancelling_the_waiter_cancels_children) {
  Log log;
  run([&] {
    auto child = [&](std::string name) {
      try {
        fiberloop::sleep(10);
      } catch (const CancelledError& e) {
        log.push_back(name + " cancelled: " + e.message());
        fiberloop::sleep(0);  // still ending when the gather is told
        log.push_back(name + " ends");
        throw;
      }
    };
    auto c1 = fiberloop::spawn(child, "c1");
    auto c2 = fiberloop::spawn(child, "c2");
    auto waiter = fiberloop::spawn([&] {
      try {
        fiberloop::gather(c1, c2, fiberloop::return_exceptions);
      } catch (const CancelledError& e) {
        log.push_back("gather: CancelledError " + e.message());
        throw;
      }
    });
    run_briefly();
    waiter.cancel("stop");
    BOOST_CHECK_THROW(fiberloop::await(waiter), CancelledError);
    BOOST_TEST(c1.cancelled());
    BOOST_TEST(c2.cancelled());
  });
  BOOST_TEST(log == (Log{"c1 cancelled: stop", "c2 cancelled: stop", "c1 ends", "c2 ends",
                         "gather: CancelledError stop"}),
             boost::test_tools::per_element());
}

// A gather cancelled while its last child is finishing (done, callbacks not
// yet run): nothing left to cancel, so the waiting task itself gets the
// cancellation, and the result is dropped — asyncio's order.
BOOST_AUTO_TEST_CASE(cancelled_while_child_is_finishing) {
  Log log;
  run([&] {
    auto child = loop.create_future<int>();
    auto waiter = fiberloop::spawn([&] {
      try {
        auto [v] = fiberloop::gather(child);
        log.push_back("value " + std::to_string(v));
      } catch (const CancelledError&) {
        log.push_back("CancelledError");
        throw;
      }
    });
    run_briefly();
    child.set_result(3);
    BOOST_TEST(waiter.cancel());
    BOOST_CHECK_THROW(fiberloop::await(waiter), CancelledError);
    BOOST_TEST(!child.cancelled());
  });
  BOOST_TEST(log == (Log{"CancelledError"}), boost::test_tools::per_element());
}

// A child that refuses the cancellation and returns: the gather still ends
// cancelled (cancel was requested), even with return_exceptions.
BOOST_AUTO_TEST_CASE(cancel_requested_wins_over_results) {
  run([&] {
    auto stubborn = fiberloop::spawn([] {
      try {
        fiberloop::sleep(10);
      } catch (const CancelledError&) {
      }
      return 1;
    });
    auto waiter =
        fiberloop::spawn([&] { fiberloop::gather(stubborn, fiberloop::return_exceptions); });
    run_briefly();
    waiter.cancel();
    BOOST_CHECK_THROW(fiberloop::await(waiter), CancelledError);
    BOOST_TEST(fiberloop::await(stubborn) == 1);
  });
}

BOOST_AUTO_TEST_CASE(outside_a_task_throws) {
  auto f = loop.create_future<int>();
  BOOST_CHECK_THROW(fiberloop::gather(f), RuntimeError);
  run([&] {  // nothing was left behind: the same future gathers fine in a task
    loop.call_soon([f] { f.set_result(2); });
    BOOST_TEST(std::get<0>(fiberloop::gather(f)) == 2);
  });
}

BOOST_AUTO_TEST_SUITE_END()
