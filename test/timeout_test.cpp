// timeout_test.cpp: timeout scopes, after CPython's test_asyncio/test_timeouts.py.
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <stdexcept>
#include <string>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::RuntimeError;
using fiberloop::Timeout;
using fiberloop::TimeoutError;

namespace {

// body_ends_scope(t, fn) is the documented way to end a scope by hand.
template <class Fn>
void in_scope(Timeout& t, Fn fn) {
  try {
    fn();
  } catch (...) {
    t.exit(std::current_exception());
  }
  t.exit();
}

int cancelling() { return fiberloop::current_task()->cancelling(); }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(timeout, LoopFixture)

// test_timeout_basic
BOOST_AUTO_TEST_CASE(basic) {
  run([&] {
    Timeout t = fiberloop::timeout(0.01);
    BOOST_CHECK_THROW(in_scope(t, [] { fiberloop::sleep(10); }), TimeoutError);
    BOOST_TEST(t.expired());
    BOOST_TEST(cancelling() == 0);
    BOOST_TEST(!fiberloop::current_task()->cancelled());
  });
}

// test_timeout_at_basic
BOOST_AUTO_TEST_CASE(at_basic) {
  run([&] {
    double deadline = loop.time() + 0.01;
    Timeout t = fiberloop::timeout_at(deadline);
    BOOST_CHECK_THROW(in_scope(t, [] { fiberloop::sleep(10); }), TimeoutError);
    BOOST_TEST(t.expired());
    BOOST_TEST(*t.when() == deadline);
  });
}

BOOST_AUTO_TEST_CASE(with_timeout_returns_value_or_throws) {
  run([&] {
    int v = fiberloop::with_timeout(1.0, [] {
      fiberloop::sleep(0.001);
      return 42;
    });
    BOOST_TEST(v == 42);
    BOOST_CHECK_THROW(fiberloop::with_timeout(0.001, [] { fiberloop::sleep(10); }), TimeoutError);
    BOOST_CHECK_THROW(fiberloop::with_timeout_at(loop.time() + 0.001, [] { fiberloop::sleep(10); }),
                      TimeoutError);
    // A foreign exception passes through (test_foreign_exception_passed).
    BOOST_CHECK_THROW(fiberloop::with_timeout(1.0, [] { throw std::logic_error("x"); }),
                      std::logic_error);
    BOOST_TEST(cancelling() == 0);
  });
}

// test_timeout_not_called / test_timeout_disabled / test_timeout_at_disabled
BOOST_AUTO_TEST_CASE(not_expired_or_disabled) {
  run([&] {
    {
      Timeout t = fiberloop::timeout(10);
      fiberloop::sleep(0);
      t.exit();
      BOOST_TEST(!t.expired());
    }
    Timeout none = fiberloop::timeout(std::nullopt);
    BOOST_TEST(!none.when().has_value());
    fiberloop::sleep(0.001);
    none.exit();
    BOOST_TEST(!none.expired());
    Timeout none_at = fiberloop::timeout_at(std::nullopt);
    none_at.exit();
    BOOST_TEST(!none_at.expired());
  });
}

// test_timeout_zero / test_timeout_in_the_past_sleep_zero: expiry on the next
// iteration, so even sleep(0) is interrupted.
BOOST_AUTO_TEST_CASE(zero_and_past_deadlines) {
  run([&] {
    Timeout t = fiberloop::timeout(0);
    BOOST_CHECK_THROW(in_scope(t, [] { fiberloop::sleep(0); }), TimeoutError);
    BOOST_TEST(t.expired());
    Timeout past = fiberloop::timeout_at(loop.time() - 10);
    BOOST_CHECK_THROW(in_scope(past, [] { fiberloop::sleep(0); }), TimeoutError);
    BOOST_TEST(past.expired());
  });
}

// test_foreign_cancel_doesnt_timeout_if_not_expired
BOOST_AUTO_TEST_CASE(foreign_cancel_is_not_a_timeout) {
  run([&] {
    auto inner = fiberloop::spawn([] {
      Timeout t = fiberloop::timeout(10);
      in_scope(t, [] { fiberloop::sleep(10); });
    });
    fiberloop::sleep(0);
    inner.cancel();
    BOOST_CHECK_THROW(fiberloop::await(inner), CancelledError);
    BOOST_TEST(inner.cancelled());
  });
}

// An outside cancel in the same iteration as the expiry stays a
// cancellation: the scope sees a second cancel request.
BOOST_AUTO_TEST_CASE(outside_cancel_racing_the_expiry_wins) {
  Log log;
  run([&] {
    double when = loop.time() + 0.01;
    fiberloop::Task<void> inner;
    inner = fiberloop::spawn([&] {
      Timeout t = fiberloop::timeout_at(when);
      try {
        in_scope(t, [] { fiberloop::sleep(10); });
      } catch (const TimeoutError&) {
        log.push_back("TimeoutError");
      } catch (const CancelledError&) {
        log.push_back(std::string("CancelledError, expired=") + (t.expired() ? "1" : "0"));
        throw;
      }
    });
    // Due in the same iteration, after the scope's own timer.
    loop.call_at(when, [&] { inner.cancel(); });
    BOOST_CHECK_THROW(fiberloop::await(inner), CancelledError);
  });
  BOOST_TEST(log == (Log{"CancelledError, expired=1"}), boost::test_tools::per_element());
}

// test_outer_task_is_not_cancelled
BOOST_AUTO_TEST_CASE(outer_task_is_not_cancelled) {
  run([&] {
    auto outer = fiberloop::spawn([] {
      BOOST_CHECK_THROW(fiberloop::with_timeout(0.001, [] { fiberloop::sleep(10); }), TimeoutError);
    });
    fiberloop::await(outer);
    BOOST_TEST(!outer.cancelled());
  });
}

// test_nested_timeouts: both expire in one iteration; the inner sees the
// outer's request too and lets CancelledError through; the outer converts.
BOOST_AUTO_TEST_CASE(nested_expiring_together) {
  Log log;
  run([&] {
    double when = loop.time() + 0.01;
    Timeout outer = fiberloop::timeout_at(when);
    std::optional<bool> inner_expired;
    try {
      in_scope(outer, [&] {
        Timeout inner = fiberloop::timeout_at(when);
        try {
          in_scope(inner, [] { fiberloop::sleep(10); });
        } catch (const CancelledError&) {
          log.push_back("inner: CancelledError");
          inner_expired = inner.expired();
          throw;
        }
      });
    } catch (const TimeoutError&) {
      log.push_back("outer: TimeoutError");
    }
    BOOST_TEST(outer.expired());
    BOOST_TEST((inner_expired && *inner_expired));
    BOOST_TEST(cancelling() == 0);
  });
  BOOST_TEST(log == (Log{"inner: CancelledError", "outer: TimeoutError"}),
             boost::test_tools::per_element());
}

// The inner scope expires alone: it throws TimeoutError, the outer goes on
// and later expires itself (test_nested_timeouts_loop_busy's second half).
BOOST_AUTO_TEST_CASE(nested_inner_expires_then_outer) {
  Log log;
  run([&] {
    try {
      fiberloop::with_timeout(0.2, [&] {
        try {
          fiberloop::with_timeout(0.001, [] { fiberloop::sleep(10); });
        } catch (const TimeoutError&) {
          log.push_back("inner timed out");
        }
        BOOST_TEST(cancelling() == 0);
        fiberloop::sleep(10);  // interrupted by the outer
        log.push_back("not reached");
      });
    } catch (const TimeoutError&) {
      log.push_back("outer timed out");
    }
  });
  BOOST_TEST(log == (Log{"inner timed out", "outer timed out"}), boost::test_tools::per_element());
}

// test_reschedule
BOOST_AUTO_TEST_CASE(reschedule) {
  run([&] {
    double d1 = loop.time() + 10;
    double d2 = d1 + 20;
    auto fut = loop.create_future<void>();
    auto f = fiberloop::spawn([&] {
      Timeout t = fiberloop::timeout_at(d1);
      BOOST_TEST(*t.when() == d1);
      t.reschedule(d2);
      BOOST_TEST(*t.when() == d2);
      t.reschedule(std::nullopt);
      BOOST_TEST(!t.when());
      in_scope(t, [&] { fiberloop::await(fut); });
    });
    fiberloop::sleep(0);
    f.cancel();
    BOOST_CHECK_THROW(fiberloop::await(f), CancelledError);
  });
}

// Reschedule to the past: expires on the next iteration.
BOOST_AUTO_TEST_CASE(reschedule_into_the_past) {
  run([&] {
    Timeout t = fiberloop::timeout(10);
    t.reschedule(loop.time() - 1);
    BOOST_CHECK_THROW(in_scope(t, [] { fiberloop::sleep(10); }), TimeoutError);
  });
}

// test_timeout_expired / test_timeout_finished / misuse.
BOOST_AUTO_TEST_CASE(misuse_is_a_clear_error) {
  BOOST_CHECK_THROW(fiberloop::timeout(1), RuntimeError);  // outside a task
  run([&] {
    Timeout t = fiberloop::timeout(0.001);
    BOOST_CHECK_THROW(in_scope(t, [] { fiberloop::sleep(10); }), TimeoutError);
    BOOST_CHECK_THROW(t.reschedule(0), RuntimeError);
    BOOST_CHECK_THROW(t.exit(), RuntimeError);
    Timeout finished = fiberloop::timeout(10);
    finished.exit();
    BOOST_CHECK_THROW(finished.reschedule(1), RuntimeError);
    BOOST_CHECK_THROW(finished.exit(), RuntimeError);
    Timeout other = fiberloop::timeout(10);
    auto elsewhere = fiberloop::spawn([&] { other.exit(); });
    BOOST_CHECK_THROW(fiberloop::await(elsewhere), RuntimeError);
    other.exit();  // still fine from its own task
  });
}

// A result that arrives with the expiry wins: the body caught the
// cancellation and returned a value (wait_for's 3.12 rule).
BOOST_AUTO_TEST_CASE(result_with_expiry_wins) {
  run([&] {
    int v = fiberloop::with_timeout(0.001, [] {
      try {
        fiberloop::sleep(10);
      } catch (const CancelledError&) {
        return 7;
      }
      return 0;
    });
    BOOST_TEST(v == 7);
    BOOST_TEST(cancelling() == 0);
  });
}

// The scope ended without exit() while an exception passes: it cleans up and
// reports that the timeout could not be converted.
BOOST_AUTO_TEST_CASE(scope_left_by_exception_without_exit_is_reported) {
  expected_reports = 1;
  run([&] {
    try {
      Timeout t = fiberloop::timeout(0.001);
      fiberloop::sleep(10);
    } catch (const CancelledError&) {
    }
    BOOST_TEST(cancelling() == 0);
    {
      Timeout quiet = fiberloop::timeout(10);  // normal end: no exit() needed
    }
  });
  BOOST_TEST(reports.size() == 1u);
  BOOST_TEST(reports.at(0).find("without exit(e)") != std::string::npos);
}

// A timeout at the same instant as the awaited future completes: the
// completion runs first (scheduled first), then the expiry finds the task
// already woken: asyncio raises TimeoutError and the value is dropped.
BOOST_AUTO_TEST_CASE(expiry_in_the_same_iteration_as_completion) {
  Log log;
  run([&] {
    double when = loop.time() + 0.01;
    auto fut = loop.create_future<int>();
    loop.call_at(when, [fut] { fut.set_result(1); });
    try {
      int v = fiberloop::with_timeout_at(when, [&] { return fiberloop::await(fut); });
      log.push_back("value " + std::to_string(v));
    } catch (const TimeoutError&) {
      log.push_back("TimeoutError");
    }
    BOOST_TEST(cancelling() == 0);
  });
  BOOST_TEST(log == (Log{"TimeoutError"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(chrono_durations) {
  using namespace std::chrono_literals;
  run([&] {
    BOOST_CHECK_THROW(fiberloop::with_timeout(1ms, [] { fiberloop::sleep(10); }), TimeoutError);
    Timeout t = fiberloop::timeout(10s);
    BOOST_TEST(*t.when() > loop.time() + 9);
    t.exit();
    auto slow = fiberloop::spawn([] { fiberloop::sleep(10); });
    BOOST_CHECK_THROW(fiberloop::wait_for(slow, 1ms), TimeoutError);
    BOOST_TEST(fiberloop::wait_for([] { return 5; }, 1s) == 5);
  });
}

BOOST_AUTO_TEST_SUITE_END()
