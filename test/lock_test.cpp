// lock_test.cpp: Lock, after CPython's test_asyncio/test_locks.py LockTests.
#include <boost/test/unit_test.hpp>
#include <mutex>
#include <string>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::Lock;
using fiberloop::RuntimeError;

namespace {

// run_briefly(n) lets the other tasks take n steps.
void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(lock, LoopFixture)

BOOST_AUTO_TEST_CASE(acquire_is_fifo) {
  Log log;
  run([&] {
    Lock lock;
    lock.acquire();
    BOOST_TEST(lock.locked());
    auto c = [&](std::string name) {
      lock.acquire();
      log.push_back(name);
      lock.release();
    };
    auto t1 = fiberloop::spawn(c, "1");
    auto t2 = fiberloop::spawn(c, "2");
    auto t3 = fiberloop::spawn(c, "3");
    run_briefly();
    BOOST_TEST(log.empty());
    lock.release();
    fiberloop::await(t1);
    fiberloop::await(t2);
    fiberloop::await(t3);
    BOOST_TEST(!lock.locked());
  });
  BOOST_TEST(log == (Log{"1", "2", "3"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(uncontended_acquire_does_not_yield) {
  run([&] {
    Lock lock;
    int ticks = 0;
    loop.call_soon([&] { ++ticks; });
    lock.acquire();
    BOOST_TEST(ticks == 0);  // no trip through the loop
    BOOST_TEST(lock.locked());
    BOOST_TEST(!lock.try_lock());
    lock.release();
    BOOST_TEST(lock.try_lock());
    lock.release();
    run_briefly();
    BOOST_TEST(ticks == 1);
  });
}

BOOST_AUTO_TEST_CASE(release_not_acquired_throws_and_lock_keeps_working) {
  run([&] {
    Lock lock;
    BOOST_CHECK_THROW(lock.release(), RuntimeError);
    lock.acquire();
    BOOST_TEST(lock.locked());
    lock.release();
    BOOST_TEST(!lock.locked());
  });
}

BOOST_AUTO_TEST_CASE(acquire_outside_a_task_throws_when_it_must_wait) {
  Lock lock;
  lock.acquire();  // uncontended: fine anywhere
  BOOST_CHECK_THROW(lock.acquire(), RuntimeError);
  lock.release();
  BOOST_TEST(!lock.locked());
}

BOOST_AUTO_TEST_CASE(guard_releases_on_scope_end_and_on_exception) {
  run([&] {
    Lock lock;
    {
      std::lock_guard guard(lock);
      BOOST_TEST(lock.locked());
    }
    BOOST_TEST(!lock.locked());
    try {
      std::lock_guard guard(lock);
      throw std::runtime_error("boom");
    } catch (const std::runtime_error&) {
    }
    BOOST_TEST(!lock.locked());
  });
}

// test_acquire_cancel: a cancelled waiter leaves without the lock.
BOOST_AUTO_TEST_CASE(cancel_while_waiting) {
  run([&] {
    Lock lock;
    lock.acquire();
    auto t = fiberloop::spawn([&] { lock.acquire(); });
    run_briefly();
    t.cancel();
    BOOST_CHECK_THROW(fiberloop::await(t), CancelledError);
    BOOST_TEST(t.cancelled());
    lock.release();
    BOOST_TEST(!lock.locked());
    BOOST_TEST(lock.try_lock());  // no stale waiter blocks it
    lock.release();
  });
}

// test_cancel_race: B is cancelled while A releases; C must get the lock.
BOOST_AUTO_TEST_CASE(cancel_race) {
  Log log;
  run([&] {
    Lock lock;
    auto fa = loop.create_future<void>();
    auto lockit = [&](std::string name, std::optional<fiberloop::Future<void>> blocker) {
      lock.acquire();
      log.push_back(name + " acquired");
      if (blocker) fiberloop::await(*blocker);
      lock.release();
    };
    auto ta = fiberloop::spawn(lockit, "A", fa);
    run_briefly();
    BOOST_TEST(lock.locked());
    auto tb = fiberloop::spawn(lockit, "B", std::nullopt);
    run_briefly();
    auto tc = fiberloop::spawn(lockit, "C", std::nullopt);
    run_briefly();
    fa.set_result();
    tb.cancel();
    run_briefly();
    BOOST_TEST(!lock.locked());
    BOOST_TEST(ta.done());
    BOOST_TEST(tb.cancelled());
    fiberloop::await(tc);
  });
  BOOST_TEST(log == (Log{"A acquired", "C acquired"}), boost::test_tools::per_element());
}

// test_cancel_release_race: release to t1 then cancel t1 in one callback:
// exactly one of the others gets the lock.
BOOST_AUTO_TEST_CASE(cancel_release_race) {
  run([&] {
    Lock lock;
    int lock_count = 0;
    int call_count = 0;
    auto lockit = [&] {
      ++call_count;
      lock.acquire();
      ++lock_count;
    };
    lock.acquire();
    auto t1 = fiberloop::spawn(lockit);
    auto t2 = fiberloop::spawn(lockit);
    auto t3 = fiberloop::spawn(lockit);
    run_briefly();
    loop.call_soon([&] {
      t1.cancel();
      lock.release();
    });
    BOOST_CHECK_THROW(fiberloop::await(t1), CancelledError);
    BOOST_TEST(lock_count == 1);
    BOOST_TEST(call_count == 3);
    BOOST_TEST(t1.cancelled());
    BOOST_TEST(t2.done());
    t3.cancel();
    run_briefly();
    BOOST_TEST(t3.cancelled());
  });
}

// test_finished_waiter_cancelled: woken, then cancelled before it ran; the
// next waiter gets the lock.
BOOST_AUTO_TEST_CASE(finished_waiter_cancelled) {
  run([&] {
    Lock lock;
    lock.acquire();
    auto tb = fiberloop::spawn([&] { lock.acquire(); });
    run_briefly();
    auto tc = fiberloop::spawn([&] { lock.acquire(); });
    run_briefly();
    lock.release();
    tb.cancel();
    run_briefly();
    BOOST_TEST(!lock.locked());
    BOOST_TEST(tb.cancelled());
    run_briefly();
    BOOST_TEST(tc.done());
    BOOST_TEST(lock.locked());
    lock.release();
  });
}

// A new acquirer does not overtake a woken waiter that has not run yet.
BOOST_AUTO_TEST_CASE(woken_waiter_is_not_overtaken) {
  Log log;
  run([&] {
    Lock lock;
    lock.acquire();
    auto waiter = fiberloop::spawn([&] {
      lock.acquire();
      log.push_back("waiter");
      lock.release();
    });
    run_briefly();
    lock.release();
    BOOST_TEST(!lock.try_lock());  // promised to the waiter
    auto late = fiberloop::spawn([&] {
      lock.acquire();
      log.push_back("late");
      lock.release();
    });
    fiberloop::await(waiter);
    fiberloop::await(late);
  });
  BOOST_TEST(log == (Log{"waiter", "late"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
