// EventLoop, after CPython's Lib/test/test_asyncio/test_base_events.py.
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::EventLoop;
using fiberloop::ExceptionContext;
using fiberloop::RuntimeError;

namespace {

// message_has(part) matches an exception whose what() contains part.
auto message_has(std::string part) {
  return [part](const std::exception& e) {
    return std::string(e.what()).find(part) != std::string::npos;
  };
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// run_forever_bounded() is run_forever() that a missing stop() cannot hang:
// it returns false when the guard timer had to stop the loop.
bool run_forever_bounded(EventLoop& loop, double limit = 5.0) {
  bool guard_fired = false;
  auto guard = loop.call_later(limit, [&] {
    guard_fired = true;
    loop.stop();
  });
  loop.run_forever();
  guard.cancel();
  return !guard_fired;
}

// busy_wait(loop, s) holds the thread inside a callback, as a slow callback would.
void busy_wait(EventLoop& loop, double seconds) {
  double end = loop.time() + seconds;
  while (loop.time() < end) {
  }
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(event_loop, LoopFixture)

// --- call_soon and Handle ---------------------------------------------------

BOOST_AUTO_TEST_CASE(call_soon_runs_in_fifo_order_with_args) {
  Log got;
  auto record = [&](const std::string& name, int n) { got.push_back(name + std::to_string(n)); };
  loop.call_soon(record, "a", 1);
  loop.call_soon(record, "b", 2);
  loop.call_soon([&] { got.push_back("c"); });
  loop.call_soon(record, "d", 4);
  BOOST_TEST(got.empty());  // nothing runs before the loop does
  loop.run_once();
  Log expected{"a1", "b2", "c", "d4"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(call_soon_copies_its_arguments_and_accepts_move_only_ones) {
  Log got;
  std::string word = "before";
  loop.call_soon([&](const std::string& s) { got.push_back(s); }, word);
  word = "after";  // the callback was given a copy
  loop.call_soon([&](std::unique_ptr<int>& p) { got.push_back(std::to_string(*p)); },
                 std::make_unique<int>(5));
  loop.run_once();
  Log expected{"before", "5"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(cancelled_handle_never_runs) {
  Log got;
  loop.call_soon([&] { got.push_back("a"); });
  auto h = loop.call_soon([&] { got.push_back("cancelled"); });
  loop.call_soon([&] { got.push_back("c"); });
  BOOST_TEST(static_cast<bool>(h));
  BOOST_TEST(!h.cancelled());
  h.cancel();
  BOOST_TEST(h.cancelled());
  h.cancel();  // twice is harmless
  loop.run_once();
  Log expected{"a", "c"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());

  fiberloop::Handle empty;
  BOOST_TEST(!empty);
  BOOST_TEST(!empty.cancelled());
  empty.cancel();
  BOOST_TEST(!empty.cancelled());
}

BOOST_AUTO_TEST_CASE(handle_cancelled_by_an_earlier_callback_of_the_same_iteration) {
  Log got;
  fiberloop::Handle victim;
  loop.call_soon([&] {
    got.push_back("canceller");
    victim.cancel();
  });
  victim = loop.call_soon([&] { got.push_back("victim"); });
  loop.call_soon([&] { got.push_back("bystander"); });
  loop.run_once();
  Log expected{"canceller", "bystander"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
  BOOST_TEST(victim.cancelled());
}

BOOST_AUTO_TEST_CASE(cancelling_a_handle_releases_what_it_captured) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  auto h = loop.call_soon([token = std::move(token)] { ++*token; });
  BOOST_TEST(!watch.expired());
  h.cancel();
  BOOST_TEST(watch.expired());
}

BOOST_AUTO_TEST_CASE(run_once_runs_only_what_was_ready_when_it_started) {
  int first = 0;
  int second = 0;
  int third = 0;
  loop.call_soon([&] {
    ++first;
    loop.call_soon([&] {
      ++second;
      loop.call_soon([&] { ++third; });
    });
  });
  loop.run_once();
  BOOST_TEST(first == 1);
  BOOST_TEST(second == 0);
  BOOST_TEST(third == 0);
  loop.run_once();
  BOOST_TEST(first == 1);
  BOOST_TEST(second == 1);
  BOOST_TEST(third == 0);
  loop.run_once();
  BOOST_TEST(first == 1);
  BOOST_TEST(second == 1);
  BOOST_TEST(third == 1);
  BOOST_TEST(!loop.is_running());
}

BOOST_AUTO_TEST_CASE(run_once_from_inside_a_callback_throws) {
  // Re-entering the iteration that is running would run the next
  // iteration's callbacks early (asyncio's _run_once is private for this).
  Log got;
  bool threw = false;
  loop.call_soon([&] {
    got.push_back("a");
    try {
      loop.run_once();
    } catch (const RuntimeError&) {
      threw = true;
    }
    // Keeps the outer iteration's count of ready callbacks satisfied even if
    // the nested call wrongly ran "b".
    loop.call_soon([&] { got.push_back("next iteration"); });
  });
  loop.call_soon([&] { got.push_back("b"); });
  loop.run_once();
  BOOST_TEST(threw);
  Log expected{"a", "b"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
  // Something to run, so that a wrong first iteration cannot leave this one waiting forever.
  loop.call_soon([&] { got.push_back("sentinel"); });
  loop.run_once();
  Log after{"a", "b", "next iteration", "sentinel"};
  BOOST_TEST(got == after, boost::test_tools::per_element());
}

// --- run_until_complete -----------------------------------------------------

BOOST_AUTO_TEST_CASE(run_until_complete_future_returns_its_result) {
  auto fut = loop.create_future<int>();
  loop.call_later(0.001, [fut] { fut.set_result(42); });
  BOOST_TEST(loop.run_until_complete(fut) == 42);
  BOOST_TEST(!loop.is_running());
  // A done future: returns at once, one more time.
  BOOST_TEST(loop.run_until_complete(fut) == 42);
}

BOOST_AUTO_TEST_CASE(run_until_complete_future_rethrows_its_exception) {
  auto fut = loop.create_future<int>();
  loop.call_soon([fut] { fut.set_exception(std::runtime_error("bad outcome")); });
  BOOST_CHECK_EXCEPTION(loop.run_until_complete(fut), std::runtime_error,
                        message_has("bad outcome"));
  BOOST_TEST(!loop.is_running());

  auto cancelled = loop.create_future<int>();
  loop.call_soon([cancelled] { cancelled.cancel("stop waiting"); });
  BOOST_CHECK_EXCEPTION(
      loop.run_until_complete(cancelled), fiberloop::CancelledError,
      [](const fiberloop::CancelledError& e) { return e.message() == "stop waiting"; });
}

BOOST_AUTO_TEST_CASE(run_until_complete_returns_as_soon_as_the_future_is_done) {
  auto fut = loop.create_future<int>();
  bool later_ran = false;
  loop.call_soon([fut] { fut.set_result(1); });
  loop.call_later(0.2, [&] { later_ran = true; });
  double t0 = loop.time();
  BOOST_TEST(loop.run_until_complete(fut) == 1);
  BOOST_TEST(!later_ran);
  BOOST_TEST(loop.time() - t0 < 0.15);
}

BOOST_AUTO_TEST_CASE(run_until_complete_callable_runs_a_task) {
  bool in_task = false;
  int r = loop.run_until_complete(
      [&](int a, int b) {
        in_task = fiberloop::current_task().has_value();
        fiberloop::sleep(0.001);
        return a + b;
      },
      2, 3);
  BOOST_TEST(r == 5);
  BOOST_TEST(in_task);
  BOOST_TEST(loop.all_tasks().empty());

  BOOST_CHECK_EXCEPTION(
      loop.run_until_complete([]() -> int { throw std::logic_error("task failed"); }),
      std::logic_error, message_has("task failed"));
  // The exception reached the caller, so it was retrieved: no report (checked by the fixture).
}

BOOST_AUTO_TEST_CASE(run_until_complete_rejects_a_future_of_another_loop) {
  EventLoop other;
  auto fut = other.create_future<int>();
  fut.set_result(1);
  BOOST_CHECK_EXCEPTION(loop.run_until_complete(fut), RuntimeError, message_has("another loop"));
  BOOST_TEST(!loop.is_running());
}

// --- stop -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(stop_inside_a_callback_finishes_the_current_iteration) {
  // asyncio: run_forever() checks _stopping only after a whole _run_once(),
  // so the batch already ready runs; what it schedules waits for the next run.
  Log got;
  loop.call_soon([&] {
    got.push_back("stopper");
    loop.stop();
    loop.call_soon([&] { got.push_back("scheduled by stopper"); });
  });
  loop.call_soon([&] { got.push_back("same batch"); });
  BOOST_TEST(run_forever_bounded(loop));
  Log expected{"stopper", "same batch"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
  BOOST_TEST(!loop.is_running());

  // The stop was consumed: the next run picks up what was left behind.
  loop.call_soon([&] { loop.stop(); });
  BOOST_TEST(run_forever_bounded(loop));
  Log after{"stopper", "same batch", "scheduled by stopper"};
  BOOST_TEST(got == after, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(stop_before_run_forever_makes_exactly_one_iteration) {
  Log got;
  loop.call_soon([&] {
    got.push_back("first");
    loop.call_soon([&] { got.push_back("second"); });
  });
  loop.stop();
  BOOST_TEST(run_forever_bounded(loop));
  Log one{"first"};
  BOOST_TEST(got == one, boost::test_tools::per_element());

  loop.stop();
  BOOST_TEST(run_forever_bounded(loop));
  Log two{"first", "second"};
  BOOST_TEST(got == two, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(stop_before_run_forever_does_not_wait_for_timers) {
  bool timer_ran = false;
  loop.call_later(0.2, [&] { timer_ran = true; });
  loop.stop();
  double t0 = loop.time();
  BOOST_TEST(run_forever_bounded(loop));
  BOOST_TEST(!timer_ran);
  BOOST_TEST(loop.time() - t0 < 0.15);
}

BOOST_AUTO_TEST_CASE(run_until_complete_after_stop_throws) {
  auto fut = loop.create_future<int>();
  loop.stop();
  BOOST_CHECK_EXCEPTION(loop.run_until_complete(fut), RuntimeError, [](const RuntimeError& e) {
    return std::string(e.what()) == "Event loop stopped before Future completed.";
  });
  BOOST_TEST(!fut.done());
  BOOST_TEST(!loop.is_running());

  // stop() from a callback while waiting: the same error.
  loop.call_soon([&] { loop.stop(); });
  BOOST_CHECK_EXCEPTION(loop.run_until_complete(fut), RuntimeError,
                        message_has("Event loop stopped before Future completed."));

  // The loop, and the future, are still usable.
  loop.call_soon([fut] { fut.set_result(3); });
  BOOST_TEST(loop.run_until_complete(fut) == 3);
}

// --- misuse -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(nested_run_from_a_callback_throws_and_the_loop_carries_on) {
  Log got;
  auto fut = loop.create_future<int>();
  loop.call_soon([&] {
    BOOST_CHECK_EXCEPTION(loop.run_forever(), RuntimeError, message_has("already running"));
    BOOST_CHECK_EXCEPTION(loop.run_until_complete(fut), RuntimeError,
                          message_has("already running"));
    // The failed attempts must not have unset the running loop.
    BOOST_TEST(loop.is_running());
    BOOST_TEST(&fiberloop::get_running_loop() == &loop);
    got.push_back("caught");
    loop.call_soon([fut] { fut.set_result(1); });
  });
  BOOST_TEST(loop.run_until_complete(fut) == 1);
  Log expected{"caught"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
  BOOST_TEST(!loop.is_running());
}

BOOST_AUTO_TEST_CASE(refused_nested_run_until_complete_of_a_done_future_does_not_stop_the_loop) {
  // asyncio refuses before add_done_callback(): no stop() is left scheduled
  // to end the outer run_forever() early.
  auto done = loop.create_future<int>();
  done.set_result(1);
  Log got;
  loop.call_soon([&] {
    BOOST_CHECK_THROW(loop.run_until_complete(done), RuntimeError);
    loop.call_later(0.01, [&] {
      got.push_back("timer");
      loop.stop();
    });
  });
  BOOST_TEST(run_forever_bounded(loop));
  Log expected{"timer"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(nested_run_until_complete_of_a_function_does_not_start_it) {
  // asyncio checks that the loop is not running before it wraps the
  // coroutine in a task: a refused call leaves nothing behind.
  bool started = false;
  bool threw = false;
  loop.call_soon([&] {
    try {
      loop.run_until_complete([&] { started = true; });
    } catch (const RuntimeError&) {
      threw = true;
    }
  });
  loop.run_once();
  BOOST_TEST(threw);
  // A task created by mistake would take its first step now.
  loop.call_soon([] {});
  loop.run_once();
  BOOST_TEST(!started);
  BOOST_TEST(loop.all_tasks().empty());
}

BOOST_AUTO_TEST_CASE(closed_loop_refuses_work) {
  auto fut = loop.create_future<int>();
  loop.close();
  BOOST_TEST(loop.is_closed());
  BOOST_CHECK_EXCEPTION(loop.run_until_complete(fut), RuntimeError, message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.run_until_complete([] { return 1; }), RuntimeError,
                        message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.run_forever(), RuntimeError, message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.run_once(), RuntimeError, message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.call_soon([] {}), RuntimeError, message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.call_later(0.1, [] {}), RuntimeError, message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.call_at(loop.time(), [] {}), RuntimeError, message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.call_soon_threadsafe([] {}), RuntimeError, message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.create_future<int>(), RuntimeError, message_has("closed"));
  BOOST_CHECK_EXCEPTION(loop.create_task([] {}), RuntimeError, message_has("closed"));
  BOOST_TEST(!loop.is_running());
  BOOST_TEST(loop.all_tasks().empty());
}

BOOST_AUTO_TEST_CASE(close_drops_scheduled_callbacks) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  loop.call_soon([token] { ++*token; });
  loop.call_later(10.0, [token] { ++*token; });
  token.reset();
  loop.close();
  BOOST_TEST(watch.expired());  // what the callbacks captured is gone, unrun
}

BOOST_AUTO_TEST_CASE(handles_outliving_close_stay_safe) {
  int calls = 0;
  auto soon = loop.call_soon([&] { ++calls; });
  auto later = loop.call_later(10.0, [&] { ++calls; });
  loop.close();
  soon.cancel();
  later.cancel();
  BOOST_TEST(soon.cancelled());
  BOOST_TEST(later.cancelled());
  BOOST_TEST(calls == 0);
}

BOOST_AUTO_TEST_CASE(close_is_idempotent_and_state_is_reported) {
  BOOST_TEST(!loop.is_closed());
  BOOST_TEST(!loop.is_running());
  bool running_inside = false;
  loop.call_soon([&] { running_inside = loop.is_running(); });
  loop.run_once();
  BOOST_TEST(running_inside);
  BOOST_TEST(!loop.is_running());
  BOOST_TEST(!loop.is_closed());
  loop.close();
  BOOST_TEST(loop.is_closed());
  BOOST_CHECK_NO_THROW(loop.close());
  BOOST_TEST(loop.is_closed());
  BOOST_TEST(!loop.is_running());
}

BOOST_AUTO_TEST_CASE(close_while_running_throws) {
  bool threw = false;
  loop.call_soon([&] {
    try {
      loop.close();
    } catch (const RuntimeError& e) {
      threw = contains(e.what(), "running");
    }
  });
  loop.run_once();
  BOOST_TEST(threw);
  BOOST_TEST(!loop.is_closed());
  // Still open: it goes on working.
  auto fut = loop.create_future<int>();
  loop.call_soon([fut] { fut.set_result(2); });
  BOOST_TEST(loop.run_until_complete(fut) == 2);
}

BOOST_AUTO_TEST_CASE(second_loop_cannot_run_while_one_runs_on_this_thread) {
  EventLoop other;
  Log got;
  auto other_fut = other.create_future<int>();
  other_fut.set_result(1);
  loop.call_soon([&] {
    BOOST_CHECK_EXCEPTION(other.run_forever(), RuntimeError, message_has("another loop"));
    BOOST_CHECK_EXCEPTION(other.run_until_complete(other_fut), RuntimeError,
                          message_has("another loop"));
    BOOST_CHECK_EXCEPTION(other.run_once(), RuntimeError, message_has("another loop"));
    BOOST_TEST(!other.is_running());
    BOOST_TEST(&fiberloop::get_running_loop() == &loop);
    got.push_back("refused");
  });
  loop.run_once();
  Log expected{"refused"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());

  // Once the first loop stopped, the other one runs normally.
  other.call_soon([&] { got.push_back("other ran"); });
  BOOST_TEST(other.run_until_complete(other_fut) == 1);
  Log after{"refused", "other ran"};
  BOOST_TEST(got == after, boost::test_tools::per_element());
}

// --- errors in callbacks and handlers ---------------------------------------

BOOST_AUTO_TEST_CASE(loop_keeps_working_after_a_callback_threw) {
  std::vector<ExceptionContext> seen;
  loop.set_exception_handler([&](EventLoop& l, const ExceptionContext& ctx) {
    BOOST_TEST(&l == &loop);
    seen.push_back(ctx);
  });
  Log got;
  loop.call_soon([&] { got.push_back("before"); });
  loop.call_soon([]() -> void { throw std::runtime_error("callback exploded"); });
  loop.call_soon([&] { got.push_back("after"); });
  loop.run_once();
  Log expected{"before", "after"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());
  BOOST_REQUIRE(seen.size() == 1u);
  BOOST_TEST(seen[0].message == "Exception in callback");
  BOOST_REQUIRE(seen[0].exception);
  BOOST_CHECK_EXCEPTION(std::rethrow_exception(seen[0].exception), std::runtime_error,
                        message_has("callback exploded"));

  // A throw that is not a std::exception is reported too.
  loop.call_soon([]() -> void { throw 17; });
  loop.call_soon([&] { got.push_back("still going"); });
  loop.run_once();
  BOOST_TEST(seen.size() == 2u);
  BOOST_TEST(got.back() == "still going");

  auto fut = loop.create_future<int>();
  loop.call_soon([fut] { fut.set_result(9); });
  BOOST_TEST(loop.run_until_complete(fut) == 9);
}

BOOST_AUTO_TEST_CASE(throwing_exception_handler_falls_back_to_the_default) {
  int handler_calls = 0;
  loop.set_exception_handler([&](EventLoop&, const ExceptionContext&) {
    ++handler_calls;
    throw std::runtime_error("the handler itself failed");
  });
  Log got;
  loop.call_soon([]() -> void { throw std::runtime_error("first failure"); });
  loop.call_soon([&] { got.push_back("later callback"); });
  loop.run_once();  // the default handler writes both reports to stderr
  BOOST_TEST(handler_calls == 1);
  Log expected{"later callback"};
  BOOST_TEST(got == expected, boost::test_tools::per_element());

  // Called directly, too: it is noexcept and must not terminate.
  loop.call_exception_handler({"direct report", nullptr, {}});
  BOOST_TEST(handler_calls == 2);

  // Restoring the default handler works.
  loop.set_exception_handler(nullptr);
  BOOST_TEST(!loop.get_exception_handler());
}

BOOST_AUTO_TEST_CASE(slow_callback_is_reported_in_debug_mode) {
  std::vector<ExceptionContext> seen;
  loop.set_exception_handler([&](EventLoop&, const ExceptionContext& ctx) { seen.push_back(ctx); });
  BOOST_TEST(!loop.get_debug());
  loop.set_debug(true);
  BOOST_TEST(loop.get_debug());
  loop.set_slow_callback_duration(0.02);
  BOOST_TEST(loop.slow_callback_duration() == 0.02);
  loop.call_soon([&] { busy_wait(loop, 0.05); });
  loop.run_once();
  // Other callbacks may be slow too on a loaded machine: look for ours.
  bool found = false;
  for (const auto& ctx : seen) {
    if (contains(ctx.message, "took") && contains(ctx.message, "Handle") && !ctx.exception)
      found = true;
  }
  BOOST_TEST(found, "no slow-callback report in " << seen.size() << " report(s)");
}

BOOST_AUTO_TEST_CASE(slow_task_step_is_reported_with_the_task_name) {
  std::vector<ExceptionContext> seen;
  loop.set_exception_handler([&](EventLoop&, const ExceptionContext& ctx) { seen.push_back(ctx); });
  loop.set_debug(true);
  loop.set_slow_callback_duration(0.02);
  auto task = loop.create_task(fiberloop::TaskOptions{"slowpoke", 0}, [&] {
    busy_wait(loop, 0.05);
    return 1;
  });
  BOOST_TEST(loop.run_until_complete(task) == 1);
  bool found = false;
  for (const auto& ctx : seen) {
    if (contains(ctx.message, "took") && contains(ctx.message, "slowpoke") &&
        ctx.task == "slowpoke") {
      found = true;
    }
  }
  BOOST_TEST(found, "no slow-step report naming the task in " << seen.size() << " report(s)");
}

BOOST_AUTO_TEST_CASE(fast_callbacks_are_not_reported_without_debug) {
  std::vector<ExceptionContext> seen;
  loop.set_exception_handler([&](EventLoop&, const ExceptionContext& ctx) { seen.push_back(ctx); });
  loop.set_slow_callback_duration(0.0);  // any callback is "slow", but debug is off
  loop.call_soon([] {});
  loop.run_once();
  BOOST_TEST(seen.empty());
}

// --- get_running_loop and time ----------------------------------------------

BOOST_AUTO_TEST_CASE(get_running_loop_inside_and_outside) {
  BOOST_CHECK_EXCEPTION(fiberloop::get_running_loop(), RuntimeError,
                        message_has("no running event loop"));
  EventLoop* in_callback = nullptr;
  EventLoop* in_task = nullptr;
  loop.call_soon([&] { in_callback = &fiberloop::get_running_loop(); });
  loop.run_until_complete([&] { in_task = &fiberloop::get_running_loop(); });
  BOOST_TEST(in_callback == &loop);
  BOOST_TEST(in_task == &loop);
  BOOST_CHECK_THROW(fiberloop::get_running_loop(), RuntimeError);
  // A run ended by an exception clears it too.
  BOOST_CHECK_THROW(loop.run_until_complete([]() -> void { throw std::runtime_error("x"); }),
                    std::runtime_error);
  BOOST_CHECK_THROW(fiberloop::get_running_loop(), RuntimeError);
}

BOOST_AUTO_TEST_CASE(time_is_monotonic_and_advances) {
  double previous = loop.time();
  for (int i = 0; i < 1000; ++i) {
    double now = loop.time();
    BOOST_TEST_REQUIRE(now >= previous);
    previous = now;
  }
  // The steady clock brackets the loop's readings, so the comparison below is exact.
  auto steady0 = std::chrono::steady_clock::now();
  double t0 = loop.time();
  double fired_at = 0;
  auto fut = loop.create_future<void>();
  loop.call_later(0.02, [&, fut] {
    fired_at = loop.time();
    fut.set_result();
  });
  loop.run_until_complete(fut);
  double t1 = loop.time();
  double steady_elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - steady0).count();
  BOOST_TEST(fired_at - t0 >= 0.02);  // never early
  BOOST_TEST(fired_at - t0 < 0.02 + 0.5);
  // The loop's clock runs at the rate of the monotonic clock.
  BOOST_TEST(fired_at - t0 <= steady_elapsed + 1e-6);
  BOOST_TEST(t1 >= fired_at);
}

// An exception handler that closes the loop while close() reports a pending
// task must not re-enter close() (issue 6, item 2: it recursed until the
// stack overflowed). The nested call returns; the outer one finishes.
BOOST_AUTO_TEST_CASE(close_called_from_the_handler_during_close_is_a_no_op) {
  int reported = 0;
  int nested_returned = 0;
  loop.set_exception_handler([&](fiberloop::EventLoop& l, const fiberloop::ExceptionContext& ctx) {
    if (ctx.message == "Task was destroyed but it is pending!") ++reported;
    l.close();
    ++nested_returned;
  });
  int destroyed = 0;
  auto make = [&] {
    return loop.create_task([&destroyed] {
      Counted c(destroyed);
      fiberloop::sleep(3600);
    });
  };
  auto t1 = make();
  auto t2 = make();
  loop.run_once();  // both start and park
  loop.close();
  BOOST_TEST(reported == 2);
  BOOST_TEST(nested_returned == 2);
  BOOST_TEST(destroyed == 2);
  BOOST_TEST(loop.is_closed());
  BOOST_TEST(loop.all_tasks().empty());
  BOOST_CHECK_THROW(loop.call_soon([] {}), fiberloop::RuntimeError);
  loop.close();  // still idempotent afterwards
}

BOOST_AUTO_TEST_SUITE_END()
