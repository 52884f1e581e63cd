// barrier_test.cpp: Barrier, after CPython's test_asyncio/test_locks.py
// BarrierTests.
#include <boost/test/unit_test.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::Barrier;
using fiberloop::BrokenBarrierError;
using fiberloop::CancelledError;

namespace {
void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}
}  // namespace

BOOST_FIXTURE_TEST_SUITE(barrier, LoopFixture)

BOOST_AUTO_TEST_CASE(zero_parties_rejected) {
  BOOST_CHECK_THROW(Barrier(0), std::invalid_argument);
}

// test_wait_task_multi: all pass together, with distinct indices.
BOOST_AUTO_TEST_CASE(parties_pass_together) {
  Log log;
  run([&] {
    Barrier barrier(3);
    std::set<std::size_t> indices;
    auto c = [&](std::string name) {
      log.push_back(name + " arrives");
      indices.insert(barrier.wait());
      log.push_back(name + " passes");
    };
    auto t1 = fiberloop::spawn(c, "a");
    auto t2 = fiberloop::spawn(c, "b");
    run_briefly();
    BOOST_TEST(barrier.n_waiting() == 2u);
    auto t3 = fiberloop::spawn(c, "c");
    fiberloop::gather(t1, t2, t3);
    BOOST_TEST(indices == (std::set<std::size_t>{0, 1, 2}));
    BOOST_TEST(barrier.n_waiting() == 0u);
    BOOST_TEST(!barrier.broken());
  });
  BOOST_TEST(
      log == (Log{"a arrives", "b arrives", "c arrives", "c passes", "a passes", "b passes"}),
      boost::test_tools::per_element());
}

// test_draining_state / several rounds: the barrier refills for the next round.
BOOST_AUTO_TEST_CASE(several_rounds) {
  run([&] {
    Barrier barrier(2);
    int rounds_done = 0;
    auto c = [&] {
      for (int i = 0; i < 3; ++i) barrier.wait();
      ++rounds_done;
    };
    auto t1 = fiberloop::spawn(c);
    auto t2 = fiberloop::spawn(c);
    fiberloop::gather(t1, t2);
    BOOST_TEST(rounds_done == 2);
  });
}

// test_abort_barrier: waiters and later callers get BrokenBarrierError.
BOOST_AUTO_TEST_CASE(abort_breaks_waiters_and_later_calls) {
  run([&] {
    Barrier barrier(3);
    auto c = [&] { barrier.wait(); };
    auto t1 = fiberloop::spawn(c);
    auto t2 = fiberloop::spawn(c);
    run_briefly();
    barrier.abort();
    BOOST_TEST(barrier.broken());
    auto results = fiberloop::gather(t1, t2, fiberloop::return_exceptions);
    BOOST_TEST(what_of(std::get<0>(results).exception()) == "Abort or reset of barrier");
    BOOST_TEST(what_of(std::get<1>(results).exception()) == "Abort or reset of barrier");
    BOOST_CHECK_THROW(barrier.wait(), BrokenBarrierError);
    barrier.reset();  // usable again
    BOOST_TEST(!barrier.broken());
    auto t3 = fiberloop::spawn(c);
    auto t4 = fiberloop::spawn(c);
    auto t5 = fiberloop::spawn(c);
    fiberloop::gather(t3, t4, t5);
  });
}

// test_reset_barrier_while_tasks_waiting
BOOST_AUTO_TEST_CASE(reset_while_waiting) {
  run([&] {
    Barrier barrier(3);
    int broken = 0;
    auto c = [&] {
      try {
        barrier.wait();
      } catch (const BrokenBarrierError&) {
        ++broken;
      }
    };
    auto t1 = fiberloop::spawn(c);
    auto t2 = fiberloop::spawn(c);
    run_briefly();
    barrier.reset();
    fiberloop::gather(t1, t2);
    BOOST_TEST(broken == 2);
    BOOST_TEST(!barrier.broken());
    BOOST_TEST(barrier.n_waiting() == 0u);
  });
}

// A task cancelled while it waits leaves the barrier consistent.
BOOST_AUTO_TEST_CASE(cancel_while_waiting) {
  run([&] {
    Barrier barrier(2);
    auto t1 = fiberloop::spawn([&] { barrier.wait(); });
    run_briefly();
    BOOST_TEST(barrier.n_waiting() == 1u);
    t1.cancel();
    BOOST_CHECK_THROW(fiberloop::await(t1), CancelledError);
    BOOST_TEST(barrier.n_waiting() == 0u);
    auto t2 = fiberloop::spawn([&] { return barrier.wait(); });
    auto t3 = fiberloop::spawn([&] { return barrier.wait(); });
    auto [a, b] = fiberloop::gather(t2, t3);
    BOOST_TEST(a + b == 1u);
  });
}

BOOST_AUTO_TEST_SUITE_END()
