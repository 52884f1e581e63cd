// condition_test.cpp: Condition, after CPython's test_asyncio/test_locks.py
// ConditionTests.
#include <boost/test/unit_test.hpp>
#include <mutex>
#include <string>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::Condition;
using fiberloop::Lock;
using fiberloop::RuntimeError;
using fiberloop::TimeoutError;

namespace {
void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}
}  // namespace

BOOST_FIXTURE_TEST_SUITE(condition, LoopFixture)

// test_wait: notify(n) wakes n waiters, each returning once it has the lock.
BOOST_AUTO_TEST_CASE(wait_and_notify) {
  std::vector<int> result;
  run([&] {
    Condition cond;
    auto c = [&](int id) {
      cond.acquire();
      cond.wait();
      result.push_back(id);
    };
    auto t1 = fiberloop::spawn(c, 1);
    auto t2 = fiberloop::spawn(c, 2);
    auto t3 = fiberloop::spawn(c, 3);
    run_briefly();
    BOOST_TEST(result.empty());
    BOOST_TEST(!cond.locked());

    cond.acquire();
    cond.notify();
    run_briefly();
    BOOST_TEST(result.empty());
    BOOST_TEST(cond.locked());

    cond.release();
    run_briefly();
    BOOST_TEST(result == (std::vector<int>{1}), boost::test_tools::per_element());
    BOOST_TEST(cond.locked());

    cond.notify(2);
    run_briefly();
    BOOST_TEST(result.size() == 1u);

    cond.release();
    run_briefly();
    BOOST_TEST(result == (std::vector<int>{1, 2}), boost::test_tools::per_element());

    cond.release();
    run_briefly();
    BOOST_TEST(result == (std::vector<int>{1, 2, 3}), boost::test_tools::per_element());
    BOOST_TEST(cond.locked());
    cond.release();
    fiberloop::await(t1);
    fiberloop::await(t2);
    fiberloop::await(t3);
  });
}

BOOST_AUTO_TEST_CASE(unacquired_use_throws) {
  run([&] {
    Condition cond;
    BOOST_CHECK_THROW(cond.wait(), RuntimeError);
    BOOST_CHECK_THROW(cond.notify(), RuntimeError);
    BOOST_CHECK_THROW(cond.notify_all(), RuntimeError);
    BOOST_CHECK_THROW(cond.wait_for([] { return false; }), RuntimeError);
    std::lock_guard guard(cond);  // still usable
    cond.notify();
  });
}

// test_wait_cancel: cancelled while waiting, it still returns holding the lock.
BOOST_AUTO_TEST_CASE(cancel_while_waiting_reacquires) {
  run([&] {
    Condition cond;
    bool held_after = false;
    auto t = fiberloop::spawn([&] {
      std::lock_guard guard(cond);
      try {
        cond.wait();
      } catch (const CancelledError&) {
        held_after = cond.locked();
        throw;
      }
    });
    run_briefly();
    t.cancel();
    BOOST_CHECK_THROW(fiberloop::await(t), CancelledError);
    BOOST_TEST(held_after);
    BOOST_TEST(!cond.locked());
  });
}

// test_wait_cancel_contested: cancelled while another task holds the lock,
// it waits for the lock before it throws.
BOOST_AUTO_TEST_CASE(cancel_while_lock_is_contested) {
  Log log;
  run([&] {
    Condition cond;
    auto t = fiberloop::spawn([&] {
      cond.acquire();
      try {
        cond.wait();
      } catch (const CancelledError&) {
        log.push_back(cond.locked() ? "cancelled, holding the lock" : "cancelled, no lock");
        cond.release();
        throw;
      }
    });
    run_briefly();
    cond.acquire();  // the waiter released it
    t.cancel();
    run_briefly();
    BOOST_TEST(!t.done());  // it cannot get the lock back yet
    log.push_back("main releases");
    cond.release();
    BOOST_CHECK_THROW(fiberloop::await(t), CancelledError);
  });
  BOOST_TEST(log == (Log{"main releases", "cancelled, holding the lock"}),
             boost::test_tools::per_element());
}

// test_wait_cancel_after_notify: notified, then cancelled before it ran.
BOOST_AUTO_TEST_CASE(cancel_after_notify) {
  run([&] {
    Condition cond;
    auto waiter = [&] {
      std::lock_guard guard(cond);
      cond.wait();
    };
    auto w1 = fiberloop::spawn(waiter);
    auto w2 = fiberloop::spawn(waiter);
    run_briefly();
    cond.acquire();
    cond.notify();  // w1
    w1.cancel();
    cond.release();
    BOOST_CHECK_THROW(fiberloop::await(w1), CancelledError);
    // The notification w1 could not use went to w2.
    fiberloop::with_timeout(1.0, [&] { fiberloop::await(w2); });
    BOOST_TEST(!cond.locked());
  });
}

// test_wait_for: the predicate is checked first and after each wake-up.
BOOST_AUTO_TEST_CASE(wait_for_predicate) {
  Log log;
  run([&] {
    Condition cond;
    int presult = 0;
    auto predicate = [&] {
      log.push_back("check " + std::to_string(presult));
      return presult;
    };
    auto t = fiberloop::spawn([&] {
      std::lock_guard guard(cond);
      int r = cond.wait_for(predicate);
      log.push_back("got " + std::to_string(r));
    });
    run_briefly();
    cond.acquire();
    cond.notify();
    cond.release();
    run_briefly();
    presult = 3;
    cond.acquire();
    cond.notify();
    cond.release();
    fiberloop::await(t);
  });
  BOOST_TEST(log == (Log{"check 0", "check 0", "check 3", "got 3"}),
             boost::test_tools::per_element());
}

// test_notify_all wakes everybody, in order.
BOOST_AUTO_TEST_CASE(notify_all_in_order) {
  Log log;
  run([&] {
    Condition cond;
    auto c = [&](std::string name) {
      std::lock_guard guard(cond);
      cond.wait();
      log.push_back(name);
    };
    auto t1 = fiberloop::spawn(c, "1");
    auto t2 = fiberloop::spawn(c, "2");
    run_briefly();
    {
      std::lock_guard guard(cond);
      cond.notify_all();
    }
    fiberloop::await(t1);
    fiberloop::await(t2);
  });
  BOOST_TEST(log == (Log{"1", "2"}), boost::test_tools::per_element());
}

// test_cancelled_error_wakeup: the CancelledError (with its message) comes
// through unchanged.
BOOST_AUTO_TEST_CASE(cancelled_error_keeps_its_message) {
  run([&] {
    Condition cond;
    bool wake = false;
    auto t = fiberloop::spawn([&] {
      std::lock_guard guard(cond);
      cond.wait_for([&] { return wake; });
    });
    run_briefly();
    t.cancel("foo");
    try {
      fiberloop::await(t);
      BOOST_FAIL("no CancelledError");
    } catch (const CancelledError& e) {
      BOOST_TEST(e.message() == "foo");
    }
  });
}

// test_cancelled_error_re_aquire: cancelled while taking the lock back.
BOOST_AUTO_TEST_CASE(cancelled_while_reacquiring) {
  run([&] {
    Condition cond;
    bool wake = false;
    auto t = fiberloop::spawn([&] {
      std::lock_guard guard(cond);
      cond.wait_for([&] { return wake; });
    });
    run_briefly();
    cond.acquire();
    wake = true;
    cond.notify();
    run_briefly();
    t.cancel("foo");  // now waiting for the lock
    cond.release();
    try {
      fiberloop::await(t);
      BOOST_FAIL("no CancelledError");
    } catch (const CancelledError& e) {
      BOOST_TEST(e.message() == "foo");
    }
    BOOST_TEST(!cond.locked());
  });
}

// test_cancelled_wakeup (3.13): a consumer cancelled just after notify()
// chose it must not swallow the notification.
BOOST_AUTO_TEST_CASE(cancelled_wakeup_is_not_lost) {
  run([&] {
    Condition cond;
    int state = 0;
    auto consumer = [&] {
      std::lock_guard guard(cond);
      for (;;) {
        cond.wait_for([&] { return state != 0; });
        if (state < 0) return;
        --state;
      }
    };
    auto c0 = fiberloop::spawn(consumer);
    auto c1 = fiberloop::spawn(consumer);
    run_briefly();
    {
      std::lock_guard guard(cond);
      ++state;
      cond.notify(1);
      c0.cancel();
      try {
        fiberloop::with_timeout(0.01, [&] { cond.wait_for([&] { return state == 0; }); });
      } catch (const TimeoutError&) {
      }
      BOOST_TEST(state == 0);
      state = -1;
      cond.notify_all();
    }
    fiberloop::await(c1);
    BOOST_CHECK_THROW(fiberloop::await(c0), CancelledError);
  });
}

// A Condition over a shared Lock uses that lock.
BOOST_AUTO_TEST_CASE(shared_lock) {
  run([&] {
    Lock lock;
    Condition a(lock), b(lock);
    lock.acquire();
    BOOST_TEST(a.locked());
    BOOST_TEST(b.locked());
    b.release();
    BOOST_TEST(!lock.locked());
  });
}

BOOST_AUTO_TEST_SUITE_END()
