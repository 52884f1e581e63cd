// semaphore_test.cpp: Semaphore and BoundedSemaphore, after CPython's
// test_asyncio/test_locks.py SemaphoreTests.
#include <boost/test/unit_test.hpp>
#include <mutex>
#include <stdexcept>
#include <string>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::BoundedSemaphore;
using fiberloop::CancelledError;
using fiberloop::Semaphore;

namespace {
void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}
}  // namespace

BOOST_FIXTURE_TEST_SUITE(semaphore, LoopFixture)

BOOST_AUTO_TEST_CASE(initial_value) {
  BOOST_CHECK_THROW(Semaphore(-1), std::invalid_argument);
  Semaphore zero(0);
  BOOST_TEST(zero.locked());
  Semaphore two(2);
  BOOST_TEST(!two.locked());
  BOOST_TEST(two.value() == 2);
}

// test_acquire: with value 3, three of four get in; release() lets the fourth.
BOOST_AUTO_TEST_CASE(acquire_up_to_value_then_fifo) {
  Log log;
  run([&] {
    Semaphore sem(3);
    auto c = [&](std::string name) {
      sem.acquire();
      log.push_back(name);
    };
    sem.acquire();
    BOOST_TEST(sem.value() == 2);
    auto t1 = fiberloop::spawn(c, "1");
    auto t2 = fiberloop::spawn(c, "2");
    auto t3 = fiberloop::spawn(c, "3");
    auto t4 = fiberloop::spawn(c, "4");
    run_briefly();
    BOOST_TEST(log == (Log{"1", "2"}), boost::test_tools::per_element());
    BOOST_TEST(sem.locked());
    sem.release();
    sem.release();
    fiberloop::await(t3);
    fiberloop::await(t4);
    BOOST_TEST(log == (Log{"1", "2", "3", "4"}), boost::test_tools::per_element());
    BOOST_TEST(t1.done());
    BOOST_TEST(t2.done());
  });
}

// test_acquire_cancel
BOOST_AUTO_TEST_CASE(cancel_while_waiting) {
  run([&] {
    Semaphore sem(0);
    auto t = fiberloop::spawn([&] { sem.acquire(); });
    run_briefly();
    t.cancel();
    BOOST_CHECK_THROW(fiberloop::await(t), CancelledError);
    BOOST_TEST(sem.value() == 0);
    sem.release();
    BOOST_TEST(!sem.locked());
  });
}

// test_acquire_cancel_before_awoken
BOOST_AUTO_TEST_CASE(cancel_before_awoken) {
  run([&] {
    Semaphore sem(0);
    auto acq = [&] { sem.acquire(); };
    auto t1 = fiberloop::spawn(acq);
    auto t2 = fiberloop::spawn(acq);
    auto t3 = fiberloop::spawn(acq);
    auto t4 = fiberloop::spawn(acq);
    run_briefly();
    t1.cancel();
    t2.cancel();
    sem.release();
    run_briefly(2);
    BOOST_TEST(t3.done());
    BOOST_TEST(!t4.done());
    t3.cancel();
    t4.cancel();
    run_briefly();
    BOOST_TEST(t4.cancelled());
    BOOST_TEST(t1.cancelled());
    BOOST_TEST(t2.cancelled());
  });
}

// test_acquire_hang: a unit released to a waiter cancelled meanwhile goes on.
BOOST_AUTO_TEST_CASE(acquire_hang) {
  run([&] {
    Semaphore sem(0);
    auto t1 = fiberloop::spawn([&] { sem.acquire(); });
    auto t2 = fiberloop::spawn([&] { sem.acquire(); });
    run_briefly();
    t1.cancel();
    sem.release();
    run_briefly(2);
    BOOST_TEST(sem.locked());
    BOOST_TEST(t2.done());
    BOOST_TEST(t1.cancelled());
  });
}

// Released to a waiter, then the waiter is cancelled before it runs: the unit
// passes to the next waiter (the race the issue names).
BOOST_AUTO_TEST_CASE(woken_then_cancelled_passes_the_unit_on) {
  run([&] {
    Semaphore sem(0);
    auto t1 = fiberloop::spawn([&] { sem.acquire(); });
    auto t2 = fiberloop::spawn([&] { sem.acquire(); });
    run_briefly();
    sem.release();  // to t1
    t1.cancel();
    BOOST_CHECK_THROW(fiberloop::await(t1), CancelledError);
    fiberloop::await(t2);
    BOOST_TEST(sem.value() == 0);
  });
}

// test_acquire_fifo_order_2
BOOST_AUTO_TEST_CASE(fifo_order_2) {
  std::vector<int> result;
  run([&] {
    Semaphore sem(1);
    auto c1 = fiberloop::spawn([&] {
      sem.acquire();
      result.push_back(1);
    });
    auto c2 = fiberloop::spawn([&] {
      sem.acquire();
      result.push_back(2);
      sem.release();
      sem.acquire();
      result.push_back(4);
    });
    auto c3 = fiberloop::spawn([&] {
      sem.acquire();
      result.push_back(3);
    });
    run_briefly();
    sem.release();
    sem.release();
    fiberloop::gather(c1, c2, c3);
  });
  BOOST_TEST(result == (std::vector<int>{1, 2, 3, 4}), boost::test_tools::per_element());
}

// test_acquire_fifo_order_3
BOOST_AUTO_TEST_CASE(fifo_order_3) {
  std::vector<int> result;
  run([&] {
    Semaphore sem(0);
    auto c = [&](int id) {
      sem.acquire();
      result.push_back(id);
    };
    auto t1 = fiberloop::spawn(c, 1);
    auto t2 = fiberloop::spawn(c, 2);
    auto t3 = fiberloop::spawn(c, 3);
    run_briefly();
    t1.cancel();
    run_briefly();
    sem.release();
    sem.release();
    fiberloop::gather(t1, t2, t3, fiberloop::return_exceptions);
  });
  BOOST_TEST(result == (std::vector<int>{2, 3}), boost::test_tools::per_element());
}

// test_acquire_fifo_order_4 (3.13): a successful acquire wakes as many
// queued waiters as there are units.
BOOST_AUTO_TEST_CASE(fifo_order_4) {
  std::vector<int> result;
  run([&] {
    Semaphore sem(0);
    fiberloop::Task<void> t4;
    auto c4 = [&] { result.push_back(4); };
    auto t1 = fiberloop::spawn([&] {
      BOOST_TEST(sem.value() == 0);
      sem.acquire();
      BOOST_TEST(sem.value() == 0);  // every waiter was woken
      t4 = fiberloop::spawn(c4);     // runs after c3, not c2
      result.push_back(1);
    });
    auto t2 = fiberloop::spawn([&] {
      sem.release();
      sem.release();
      sem.release();
      BOOST_TEST(sem.value() == 2);
      BOOST_TEST(sem.locked());  // c1 has not woken up yet
      sem.acquire();
      result.push_back(2);
    });
    auto t3 = fiberloop::spawn([&] {
      sem.acquire();
      BOOST_TEST(sem.locked());
      result.push_back(3);
    });
    run_briefly();
    BOOST_TEST(sem.value() == 2);
    run_briefly();
    fiberloop::gather(t1, t2, t3, t4);
  });
  BOOST_TEST(result == (std::vector<int>{1, 2, 3, 4}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bounded_release_above_bound_throws) {
  run([&] {
    BoundedSemaphore sem(2);
    BOOST_CHECK_THROW(sem.release(), std::invalid_argument);
    BOOST_TEST(sem.value() == 2);
    sem.acquire();
    sem.release();
    BOOST_CHECK_THROW(sem.release(), std::invalid_argument);
    {
      std::lock_guard guard(sem);  // still works after the error
      BOOST_TEST(sem.value() == 1);
    }
    BOOST_TEST(sem.value() == 2);
  });
}

BOOST_AUTO_TEST_SUITE_END()
