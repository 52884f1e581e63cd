// event_test.cpp: Event, after CPython's test_asyncio/test_locks.py EventTests.
#include <boost/test/unit_test.hpp>
#include <string>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::Event;

BOOST_FIXTURE_TEST_SUITE(event, LoopFixture)

// test_wait: every waiter wakes on set(), in the order they waited.
BOOST_AUTO_TEST_CASE(set_wakes_every_waiter_in_order) {
  Log log;
  run([&] {
    Event ev;
    BOOST_TEST(!ev.is_set());
    auto c = [&](std::string name) {
      ev.wait();
      log.push_back(name);
    };
    auto t1 = fiberloop::spawn(c, "1");
    auto t2 = fiberloop::spawn(c, "2");
    fiberloop::sleep(0);
    BOOST_TEST(log.empty());
    auto t3 = fiberloop::spawn(c, "3");
    ev.set();
    fiberloop::sleep(0);
    BOOST_TEST(log == (Log{"3", "1", "2"}), boost::test_tools::per_element());
    fiberloop::await(t1);
    fiberloop::await(t2);
    fiberloop::await(t3);
  });
}

// test_wait_on_set: a set event does not wait (nor yield).
BOOST_AUTO_TEST_CASE(wait_on_set_event_returns_at_once) {
  run([&] {
    Event ev;
    ev.set();
    int ticks = 0;
    loop.call_soon([&] { ++ticks; });
    ev.wait();
    BOOST_TEST(ticks == 0);
    fiberloop::sleep(0);
  });
}

// test_wait_cancel: the cancelled waiter leaves; set() then wakes nobody stale.
BOOST_AUTO_TEST_CASE(cancel_while_waiting) {
  run([&] {
    Event ev;
    auto t = fiberloop::spawn([&] { ev.wait(); });
    fiberloop::sleep(0);
    t.cancel("stop");
    try {
      fiberloop::await(t);
      BOOST_FAIL("no CancelledError");
    } catch (const CancelledError& e) {
      BOOST_TEST(e.message() == "stop");
    }
    ev.set();
    BOOST_TEST(ev.is_set());
  });
}

// test_clear_with_waiters: set() then clear() before the waiters run: they
// still return, and a later wait() waits again.
BOOST_AUTO_TEST_CASE(clear_with_waiters) {
  Log log;
  run([&] {
    Event ev;
    auto t = fiberloop::spawn([&] {
      ev.wait();
      log.push_back("woken");
    });
    fiberloop::sleep(0);
    ev.set();
    ev.clear();
    BOOST_TEST(!ev.is_set());
    ev.set();  // a second set() before the waiter runs changes nothing
    ev.set();
    ev.clear();
    fiberloop::await(t);
    BOOST_TEST(!ev.is_set());
    auto again = fiberloop::spawn([&] { ev.wait(); });
    fiberloop::sleep(0);
    BOOST_TEST(!again.done());
    ev.set();
    fiberloop::await(again);
  });
  BOOST_TEST(log == (Log{"woken"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
