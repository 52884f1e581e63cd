// Future<T> and Future<void>, after CPython's Lib/test/test_asyncio/test_futures.py.
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::Future;
using fiberloop::InvalidStateError;
using fiberloop::RuntimeError;

namespace {

bool message_is(const CancelledError& e, const std::string& expected) {
  return e.message() == expected;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(future, LoopFixture)

BOOST_AUTO_TEST_CASE(initial_state_is_pending) {
  auto fut = loop.create_future<int>();
  BOOST_TEST(fut.valid());
  BOOST_TEST(!fut.done());
  BOOST_TEST(!fut.cancelled());
  BOOST_TEST(&fut.get_loop() == &loop);
}

BOOST_AUTO_TEST_CASE(result_and_exception_while_pending_throw_invalid_state) {
  auto fut = loop.create_future<int>();
  BOOST_CHECK_THROW(fut.result(), InvalidStateError);
  BOOST_CHECK_THROW(fut.exception(), InvalidStateError);
  BOOST_CHECK_THROW(fiberloop::take_result(fut), InvalidStateError);
  // Asking too early must not have changed anything.
  BOOST_TEST(!fut.done());
  fut.set_result(1);
  BOOST_TEST(fut.result() == 1);
}

BOOST_AUTO_TEST_CASE(set_result_makes_it_done) {
  auto fut = loop.create_future<std::string>();
  fut.set_result("the result");
  BOOST_TEST(fut.done());
  BOOST_TEST(!fut.cancelled());
  BOOST_TEST(fut.result() == "the result");
  BOOST_TEST(!static_cast<bool>(fut.exception()));
  // result() can be read any number of times.
  BOOST_TEST(fut.result() == "the result");
  BOOST_TEST(fiberloop::take_result(fut) == "the result");
}

BOOST_AUTO_TEST_CASE(set_exception_is_rethrown_by_result) {
  auto fut = loop.create_future<int>();
  fut.set_exception(std::runtime_error("boom"));
  BOOST_TEST(fut.done());
  BOOST_TEST(!fut.cancelled());
  BOOST_CHECK_EXCEPTION(fut.result(), std::runtime_error, [](const std::runtime_error& e) {
    return std::string(e.what()) == "boom";
  });
  std::exception_ptr e = fut.exception();
  BOOST_REQUIRE(e);
  BOOST_TEST(what_of(e) == "boom");
}

BOOST_AUTO_TEST_CASE(set_exception_accepts_exception_ptr_and_rejects_null) {
  auto fut = loop.create_future<int>();
  BOOST_CHECK_THROW(fut.set_exception(std::exception_ptr()), std::invalid_argument);
  BOOST_TEST(!fut.done());
  fut.set_exception(std::make_exception_ptr(std::logic_error("from a pointer")));
  BOOST_CHECK_THROW(fut.result(), std::logic_error);
}

BOOST_AUTO_TEST_CASE(completing_a_done_future_throws_and_keeps_the_result) {
  auto fut = loop.create_future<int>();
  fut.set_result(1);
  BOOST_CHECK_THROW(fut.set_result(2), InvalidStateError);
  BOOST_CHECK_THROW(fut.set_exception(std::runtime_error("late")), InvalidStateError);
  BOOST_TEST(fut.result() == 1);
  BOOST_TEST(!static_cast<bool>(fut.exception()));
  BOOST_TEST(!fut.cancel());
  BOOST_TEST(!fut.cancelled());
  BOOST_TEST(fut.result() == 1);
}

BOOST_AUTO_TEST_CASE(completing_a_failed_future_throws_and_keeps_the_exception) {
  auto fut = loop.create_future<int>();
  fut.set_exception(std::runtime_error("first"));
  BOOST_CHECK_THROW(fut.set_result(2), InvalidStateError);
  BOOST_CHECK_THROW(fut.set_exception(std::runtime_error("second")), InvalidStateError);
  BOOST_TEST(what_of(fut.exception()) == "first");
}

BOOST_AUTO_TEST_CASE(cancel_once_then_result_throws_cancelled_error) {
  auto fut = loop.create_future<int>();
  BOOST_TEST(fut.cancel("no longer needed"));
  BOOST_TEST(fut.cancelled());
  BOOST_TEST(fut.done());
  BOOST_TEST(!fut.cancel("again"));
  BOOST_CHECK_EXCEPTION(fut.result(), CancelledError,
                        [](const CancelledError& e) { return message_is(e, "no longer needed"); });
  BOOST_CHECK_EXCEPTION(fut.exception(), CancelledError,
                        [](const CancelledError& e) { return message_is(e, "no longer needed"); });
  BOOST_CHECK_THROW(fut.set_result(1), InvalidStateError);
  BOOST_CHECK_THROW(fut.set_exception(std::runtime_error("x")), InvalidStateError);
  BOOST_TEST(fut.cancelled());
}

BOOST_AUTO_TEST_CASE(cancel_without_message) {
  auto fut = loop.create_future<void>();
  BOOST_TEST(fut.cancel());
  BOOST_CHECK_EXCEPTION(fut.result(), CancelledError,
                        [](const CancelledError& e) { return message_is(e, ""); });
}

BOOST_AUTO_TEST_CASE(cancel_on_a_finished_future_returns_false) {
  auto with_result = loop.create_future<int>();
  with_result.set_result(5);
  BOOST_TEST(!with_result.cancel());
  BOOST_TEST(!with_result.cancelled());
  BOOST_TEST(with_result.result() == 5);

  auto with_exception = loop.create_future<int>();
  with_exception.set_exception(std::runtime_error("kept"));
  BOOST_TEST(!with_exception.cancel());
  BOOST_TEST(!with_exception.cancelled());
  BOOST_TEST(what_of(with_exception.exception()) == "kept");
}

BOOST_AUTO_TEST_CASE(done_callbacks_are_scheduled_in_order_with_the_future) {
  auto fut = loop.create_future<int>();
  Log got;
  for (std::string name : {"a", "b", "c"}) {
    fut.add_done_callback([&got, &fut, name](Future<int> f) {
      BOOST_TEST((f == fut));
      got.push_back(name + std::to_string(f.result()));
    });
  }
  BOOST_TEST(got.empty());
  fut.set_result(7);
  // Never inline: nothing runs before the loop does.
  BOOST_TEST(got.empty());
  loop.run_once();
  Log expected{"a7", "b7", "c7"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(done_callbacks_run_on_set_exception_and_on_cancel) {
  auto failed = loop.create_future<int>();
  auto cancelled = loop.create_future<int>();
  Log got;
  failed.add_done_callback(
      [&](Future<int> f) { got.push_back("failed:" + what_of(f.exception())); });
  cancelled.add_done_callback(
      [&](Future<int> f) { got.push_back(f.cancelled() ? "cancelled" : "not cancelled"); });
  failed.set_exception(std::runtime_error("err"));
  cancelled.cancel();
  BOOST_TEST(got.empty());
  loop.run_once();
  Log expected{"failed:err", "cancelled"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(done_callbacks_wait_for_the_next_iteration_when_set_inside_the_loop) {
  auto fut = loop.create_future<int>();
  Log got;
  fut.add_done_callback([&](Future<int>) { got.push_back("callback"); });
  loop.call_soon([&] {
    fut.set_result(1);
    got.push_back("setter");
  });
  loop.call_soon([&] { got.push_back("queued before"); });
  loop.run_once();
  Log first{"setter", "queued before"};
  BOOST_TEST(got == first, boost::test_tools::per_element());
  loop.run_once();
  Log second{"setter", "queued before", "callback"};
  BOOST_TEST(got == second, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(add_done_callback_on_a_done_future_is_scheduled_not_inline) {
  auto fut = loop.create_future<int>();
  fut.set_result(3);
  int calls = 0;
  int seen = 0;
  fut.add_done_callback([&](Future<int> f) {
    ++calls;
    seen = f.result();
  });
  BOOST_TEST(calls == 0);
  loop.run_once();
  BOOST_TEST(calls == 1);
  BOOST_TEST(seen == 3);
}

BOOST_AUTO_TEST_CASE(remove_done_callback_returns_one_then_zero) {
  auto fut = loop.create_future<int>();
  int calls = 0;
  auto id = fut.add_done_callback([&](Future<int>) { ++calls; });
  BOOST_TEST(fut.remove_done_callback(id) == 1u);
  BOOST_TEST(fut.remove_done_callback(id) == 0u);
  BOOST_TEST(fut.remove_done_callback(id + 1000) == 0u);
  // A sentinel keeps run_once() from waiting forever on an empty loop.
  fut.add_done_callback([&](Future<int>) { calls += 10; });
  fut.set_result(1);
  loop.run_once();
  BOOST_TEST(calls == 10);
}

BOOST_AUTO_TEST_CASE(remove_the_first_callback_keeps_the_order_of_the_rest) {
  auto fut = loop.create_future<int>();
  Log got;
  auto a = fut.add_done_callback([&](Future<int>) { got.push_back("a"); });
  fut.add_done_callback([&](Future<int>) { got.push_back("b"); });
  fut.add_done_callback([&](Future<int>) { got.push_back("c"); });
  BOOST_TEST(fut.remove_done_callback(a) == 1u);
  fut.set_result(0);
  loop.run_once();
  Log expected{"b", "c"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(remove_the_middle_callback_keeps_the_order_of_the_rest) {
  auto fut = loop.create_future<int>();
  Log got;
  fut.add_done_callback([&](Future<int>) { got.push_back("a"); });
  auto b = fut.add_done_callback([&](Future<int>) { got.push_back("b"); });
  fut.add_done_callback([&](Future<int>) { got.push_back("c"); });
  fut.add_done_callback([&](Future<int>) { got.push_back("d"); });
  BOOST_TEST(fut.remove_done_callback(b) == 1u);
  fut.set_result(0);
  loop.run_once();
  Log expected{"a", "c", "d"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(remove_the_last_callback_and_the_first_two) {
  auto fut = loop.create_future<int>();
  Log got;
  auto a = fut.add_done_callback([&](Future<int>) { got.push_back("a"); });
  auto b = fut.add_done_callback([&](Future<int>) { got.push_back("b"); });
  fut.add_done_callback([&](Future<int>) { got.push_back("c"); });
  auto d = fut.add_done_callback([&](Future<int>) { got.push_back("d"); });
  BOOST_TEST(fut.remove_done_callback(d) == 1u);
  BOOST_TEST(fut.remove_done_callback(a) == 1u);
  BOOST_TEST(fut.remove_done_callback(b) == 1u);
  fut.set_result(0);
  loop.run_once();
  Log expected{"c"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(callbacks_run_once_when_adds_and_removes_mix) {
  auto fut = loop.create_future<int>();
  Log got;
  auto cb = [&](std::string name) { return [&got, name](Future<int>) { got.push_back(name); }; };
  auto a = fut.add_done_callback(cb("a"));
  fut.add_done_callback(cb("b"));
  BOOST_TEST(fut.remove_done_callback(a) == 1u);
  fut.add_done_callback(cb("a again"));  // after removing the first: must not take its place
  auto c = fut.add_done_callback(cb("c"));
  BOOST_TEST(fut.remove_done_callback(c) == 1u);
  fut.add_done_callback(cb("d"));
  fut.set_result(0);
  // Each ready callback is a separate handle; a second iteration must find none of them again.
  loop.call_soon([&] { loop.call_soon([&] { got.push_back("two iterations later"); }); });
  loop.run_once();
  loop.run_once();
  Log expected{"b", "a again", "d", "two iterations later"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(remove_after_done_is_too_late) {
  // As in asyncio, the callbacks are handed to the loop when the future
  // completes: removing one then finds nothing and it still runs.
  auto fut = loop.create_future<int>();
  int calls = 0;
  auto id = fut.add_done_callback([&](Future<int>) { ++calls; });
  fut.set_result(0);
  BOOST_TEST(fut.remove_done_callback(id) == 0u);
  loop.run_once();
  BOOST_TEST(calls == 1);
}

BOOST_AUTO_TEST_CASE(a_throwing_callback_is_reported_and_later_ones_still_run) {
  expected_reports = 1;
  auto fut = loop.create_future<int>();
  Log got;
  fut.add_done_callback([&](Future<int>) { got.push_back("before"); });
  fut.add_done_callback([&](Future<int>) -> void { throw std::runtime_error("callback failed"); });
  fut.add_done_callback([&](Future<int>) { got.push_back("after"); });
  fut.set_result(0);
  loop.run_once();
  Log expected{"before", "after"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
  BOOST_REQUIRE(reports.size() == 1u);
  BOOST_TEST(reports[0] == "Exception in callback");
}

BOOST_AUTO_TEST_CASE(unretrieved_exception_is_reported_when_the_future_dies) {
  std::vector<fiberloop::ExceptionContext> seen;
  loop.set_exception_handler(
      [&](fiberloop::EventLoop&, const fiberloop::ExceptionContext& ctx) { seen.push_back(ctx); });
  {
    auto fut = loop.create_future<int>();
    fut.set_exception(std::runtime_error("lost"));
    BOOST_TEST(fut.done());  // looking at done() is not retrieving
    BOOST_TEST(seen.empty());
  }
  BOOST_REQUIRE(seen.size() == 1u);
  BOOST_TEST(seen[0].message == "Future exception was never retrieved");
  BOOST_REQUIRE(seen[0].exception);
  BOOST_TEST(what_of(seen[0].exception) == "lost");
}

BOOST_AUTO_TEST_CASE(unretrieved_exception_is_reported_only_when_the_last_copy_dies) {
  expected_reports = 1;
  std::optional<Future<int>> copy;
  {
    auto fut = loop.create_future<int>();
    copy = fut;
    fut.set_exception(std::runtime_error("lost"));
  }
  BOOST_TEST(reports.empty());
  copy.reset();
  BOOST_REQUIRE(reports.size() == 1u);
  BOOST_TEST(reports[0] == "Future exception was never retrieved");
}

BOOST_AUTO_TEST_CASE(retrieved_exception_is_not_reported) {
  {
    auto fut = loop.create_future<int>();
    fut.set_exception(std::runtime_error("seen by result"));
    BOOST_CHECK_THROW(fut.result(), std::runtime_error);
  }
  {
    auto fut = loop.create_future<int>();
    fut.set_exception(std::runtime_error("seen by exception"));
    BOOST_TEST(static_cast<bool>(fut.exception()));
  }
  {
    auto fut = loop.create_future<void>();
    fut.set_exception(std::runtime_error("seen by run_until_complete"));
    BOOST_CHECK_THROW(loop.run_until_complete(fut), std::runtime_error);
  }
  {
    auto fut = loop.create_future<int>();
    fut.set_exception(std::runtime_error("seen by a done callback"));
    fut.add_done_callback([](Future<int> f) { BOOST_TEST(static_cast<bool>(f.exception())); });
    loop.run_once();
  }
  BOOST_TEST(reports.empty());  // the fixture also fails on any report
}

BOOST_AUTO_TEST_CASE(move_only_result_through_await) {
  auto fut = loop.create_future<std::unique_ptr<int>>();
  loop.call_soon([fut] { fut.set_result(std::make_unique<int>(42)); });
  std::unique_ptr<int> got = run([fut] { return fiberloop::await(fut); });
  BOOST_REQUIRE(got);
  BOOST_TEST(*got == 42);
  // The value moved out to the first taker.
  BOOST_CHECK_THROW(fut.result(), InvalidStateError);  // taken: no moved-from value
}

BOOST_AUTO_TEST_CASE(move_only_result_through_take_result_and_run_until_complete) {
  auto fut = loop.create_future<std::unique_ptr<int>>();
  fut.set_result(std::make_unique<int>(7));
  BOOST_REQUIRE(fut.result().get() != nullptr);
  BOOST_TEST(*fut.result() == 7);  // result() lends it
  std::unique_ptr<int> taken = fiberloop::take_result(fut);
  BOOST_REQUIRE(taken);
  BOOST_TEST(*taken == 7);
  BOOST_CHECK_THROW(fut.result(), InvalidStateError);  // taken: no moved-from value

  auto later = loop.create_future<std::unique_ptr<int>>();
  loop.call_soon([later] { later.set_result(std::make_unique<int>(8)); });
  std::unique_ptr<int> got = loop.run_until_complete(later);
  BOOST_REQUIRE(got);
  BOOST_TEST(*got == 8);
}

BOOST_AUTO_TEST_CASE(copies_share_state) {
  auto a = loop.create_future<int>();
  Future<int> b = a;
  Future<int> c;
  c = b;
  BOOST_TEST((a == b));
  BOOST_TEST((a == c));
  BOOST_TEST(!(a == loop.create_future<int>()));
  c.set_result(9);
  BOOST_TEST(a.done());
  BOOST_TEST(a.result() == 9);
  BOOST_TEST(b.result() == 9);
  BOOST_CHECK_THROW(a.set_result(10), InvalidStateError);
  BOOST_TEST(b.result() == 9);
}

BOOST_AUTO_TEST_CASE(empty_handle_throws_invalid_state) {
  Future<int> empty;
  BOOST_TEST(!empty.valid());
  BOOST_TEST((empty == Future<int>()));
  BOOST_CHECK_THROW(empty.done(), InvalidStateError);
  BOOST_CHECK_THROW(empty.cancelled(), InvalidStateError);
  BOOST_CHECK_THROW(empty.result(), InvalidStateError);
  BOOST_CHECK_THROW(empty.exception(), InvalidStateError);
  BOOST_CHECK_THROW(empty.set_result(1), InvalidStateError);
  BOOST_CHECK_THROW(empty.set_exception(std::runtime_error("x")), InvalidStateError);
  BOOST_CHECK_THROW(empty.cancel(), InvalidStateError);
  BOOST_CHECK_THROW(empty.add_done_callback([](Future<int>) {}), InvalidStateError);
  BOOST_CHECK_THROW(empty.remove_done_callback(1), InvalidStateError);
  BOOST_CHECK_THROW(empty.get_loop(), InvalidStateError);
  BOOST_CHECK_THROW(fiberloop::take_result(empty), InvalidStateError);

  Future<std::unique_ptr<int>> empty_move_only;
  BOOST_CHECK_THROW(fiberloop::take_result(empty_move_only), InvalidStateError);
  Future<void> empty_void;
  BOOST_CHECK_THROW(empty_void.set_result(), InvalidStateError);
}

BOOST_AUTO_TEST_CASE(future_outliving_its_loop_refuses_to_complete) {
  Future<int> fut;
  {
    fiberloop::EventLoop short_lived;
    fut = short_lived.create_future<int>();
  }
  BOOST_CHECK_THROW(fut.set_result(1), RuntimeError);
  BOOST_CHECK_THROW(fut.set_exception(std::runtime_error("x")), RuntimeError);
  BOOST_CHECK_THROW(fut.get_loop(), RuntimeError);
  // The refused calls changed nothing.
  BOOST_TEST(!fut.done());
  BOOST_CHECK_THROW(fut.result(), InvalidStateError);
}

BOOST_AUTO_TEST_CASE(finished_future_outliving_its_loop_keeps_its_result) {
  Future<std::string> fut;
  {
    fiberloop::EventLoop short_lived;
    fut = short_lived.create_future<std::string>();
    fut.add_done_callback([](Future<std::string>) {});  // scheduled, then dropped by close
    fut.set_result("kept");
  }
  BOOST_TEST(fut.done());
  BOOST_TEST(fut.result() == "kept");
  BOOST_CHECK_THROW(fut.set_result("again"), InvalidStateError);
}

BOOST_AUTO_TEST_CASE(void_future) {
  auto fut = loop.create_future<void>();
  int calls = 0;
  fut.add_done_callback([&](Future<void> f) {
    ++calls;
    f.result();
  });
  BOOST_CHECK_THROW(fut.result(), InvalidStateError);
  fut.set_result();
  BOOST_TEST(fut.done());
  BOOST_CHECK_NO_THROW(fut.result());
  BOOST_TEST(!static_cast<bool>(fut.exception()));
  BOOST_CHECK_THROW(fut.set_result(), InvalidStateError);
  BOOST_TEST(calls == 0);
  loop.run_once();
  BOOST_TEST(calls == 1);
  BOOST_CHECK_NO_THROW(loop.run_until_complete(fut));
}

BOOST_AUTO_TEST_CASE(await_a_void_future_from_a_task) {
  auto fut = loop.create_future<void>();
  loop.call_soon([fut] { fut.set_result(); });
  bool resumed = run([fut] {
    fiberloop::await(fut);
    return true;
  });
  BOOST_TEST(resumed);
}

BOOST_AUTO_TEST_CASE(loop_still_works_after_misuse) {
  auto fut = loop.create_future<int>();
  fut.set_result(1);
  BOOST_CHECK_THROW(fut.set_result(2), InvalidStateError);
  BOOST_CHECK_THROW(Future<int>().set_result(3), InvalidStateError);
  auto next = loop.create_future<int>();
  loop.call_soon([next] { next.set_result(4); });
  BOOST_TEST(loop.run_until_complete(next) == 4);
  BOOST_TEST(loop.run_until_complete(fut) == 1);
}

// Over-aligned results live at their alignment (issue 6, item 6: the pool
// gave 16 bytes). This suite runs in the normal build, where the pool is used.
struct alignas(64) Wide {
  int v = 0;
  unsigned char pad[60] = {};
};

BOOST_AUTO_TEST_CASE(over_aligned_results_are_aligned) {
  std::vector<Future<Wide>> futs;
  for (int i = 0; i < 8; ++i) {
    futs.push_back(loop.create_future<Wide>());
    futs.back().set_result(Wide{i, {}});
  }
  for (int i = 0; i < 8; ++i) {
    const Wide& w = futs[i].result();
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(&w) % 64 == 0u);
    BOOST_TEST(w.v == i);
  }
  std::vector<fiberloop::Task<Wide>> tasks;
  for (int i = 0; i < 8; ++i) tasks.push_back(loop.create_task([i] { return Wide{i, {}}; }));
  loop.run_until_complete(tasks.back());
  for (int i = 0; i < 8; ++i) {
    BOOST_REQUIRE(tasks[i].done());
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(&tasks[i].result()) % 64 == 0u);
    BOOST_TEST(tasks[i].result().v == i);
  }
  // Ordinary futures still come from the pool afterwards.
  auto f = loop.create_future<int>();
  f.set_result(3);
  BOOST_TEST(f.result() == 3);
}

BOOST_AUTO_TEST_SUITE_END()
