// queue_test.cpp: Queue, LifoQueue and PriorityQueue, after CPython's
// test_asyncio/test_queues.py (3.13, with shutdown).
#include <boost/test/unit_test.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::LifoQueue;
using fiberloop::PriorityQueue;
using fiberloop::Queue;
using fiberloop::QueueEmpty;
using fiberloop::QueueFull;
using fiberloop::QueueShutDown;

namespace {
void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}
}  // namespace

BOOST_FIXTURE_TEST_SUITE(queue, LoopFixture)

// test_empty / test_full / test_maxsize
BOOST_AUTO_TEST_CASE(sizes) {
  Queue<int> q(2);
  BOOST_TEST(q.empty());
  BOOST_TEST(q.maxsize() == 2u);
  q.put_nowait(1);
  BOOST_TEST(!q.empty());
  BOOST_TEST(!q.full());
  q.put_nowait(2);
  BOOST_TEST(q.full());
  BOOST_TEST(q.qsize() == 2u);
  BOOST_CHECK_THROW(q.put_nowait(3), QueueFull);
  BOOST_TEST(q.qsize() == 2u);  // the failed put changed nothing
  BOOST_TEST(q.get_nowait() == 1);
  BOOST_TEST(q.get_nowait() == 2);
  BOOST_CHECK_THROW(q.get_nowait(), QueueEmpty);
  Queue<int> unbounded;
  for (int i = 0; i < 1000; ++i) unbounded.put_nowait(i);
  BOOST_TEST(!unbounded.full());
  for (int i = 0; i < 1000; ++i) BOOST_TEST_REQUIRE(unbounded.get_nowait() == i);
}

BOOST_AUTO_TEST_CASE(orders) {
  LifoQueue<int> lifo;
  PriorityQueue<int> prio;
  PriorityQueue<std::pair<int, std::string>> jobs;
  for (int i : {1, 3, 2}) {
    lifo.put_nowait(i);
    prio.put_nowait(i);
  }
  jobs.put_nowait({2, "b"});
  jobs.put_nowait({1, "a"});
  jobs.put_nowait({3, "c"});
  BOOST_TEST(lifo.get_nowait() == 2);
  BOOST_TEST(lifo.get_nowait() == 3);
  BOOST_TEST(lifo.get_nowait() == 1);
  BOOST_TEST(prio.get_nowait() == 1);
  BOOST_TEST(prio.get_nowait() == 2);
  BOOST_TEST(prio.get_nowait() == 3);
  BOOST_TEST(jobs.get_nowait().second == "a");
  BOOST_TEST(jobs.get_nowait().second == "b");
  BOOST_TEST(jobs.get_nowait().second == "c");
}

BOOST_AUTO_TEST_CASE(move_only_items) {
  run([&] {
    Queue<std::unique_ptr<int>> q(1);
    auto consumer = fiberloop::spawn([&] {
      int sum = 0;
      for (int i = 0; i < 3; ++i) sum += *q.get();
      return sum;
    });
    for (int i = 1; i <= 3; ++i) q.put(std::make_unique<int>(i));
    BOOST_TEST(fiberloop::await(consumer) == 6);
  });
}

// test_blocking_get / test_blocking_put, in the order asyncio gives.
BOOST_AUTO_TEST_CASE(blocking_put_and_get) {
  Log log;
  run([&] {
    Queue<int> q(1);
    auto producer = fiberloop::spawn([&] {
      for (int i = 0; i < 3; ++i) {
        q.put(i);
        log.push_back("put " + std::to_string(i));
      }
    });
    auto consumer = fiberloop::spawn([&] {
      for (int i = 0; i < 3; ++i) log.push_back("got " + std::to_string(q.get()));
    });
    fiberloop::gather(producer, consumer);
  });
  BOOST_TEST(log == (Log{"put 0", "got 0", "put 1", "got 1", "put 2", "got 2"}),
             boost::test_tools::per_element());
}

// test_get_cancelled_race
BOOST_AUTO_TEST_CASE(get_cancelled_race) {
  run([&] {
    Queue<std::string> q;
    auto t1 = fiberloop::spawn([&] { return q.get(); });
    auto t2 = fiberloop::spawn([&] { return q.get(); });
    run_briefly();
    t1.cancel();
    run_briefly();
    BOOST_TEST(t1.done());
    q.put("a");
    run_briefly();
    BOOST_TEST(fiberloop::await(t2) == "a");
  });
}

// A getter woken by put_nowait() and cancelled before it ran passes the
// item's wake-up to the next getter.
BOOST_AUTO_TEST_CASE(woken_getter_cancelled_wakes_the_next) {
  run([&] {
    Queue<int> q;
    auto t1 = fiberloop::spawn([&] { return q.get(); });
    auto t2 = fiberloop::spawn([&] { return q.get(); });
    run_briefly();
    q.put_nowait(7);  // wakes t1
    t1.cancel();
    BOOST_CHECK_THROW(fiberloop::await(t1), CancelledError);
    BOOST_TEST(fiberloop::wait_for(t2, 1.0) == 7);
  });
}

// test_put_cancelled_race
BOOST_AUTO_TEST_CASE(put_cancelled_race) {
  run([&] {
    Queue<std::string> q(1);
    auto put_a = fiberloop::spawn([&] { q.put("a"); });
    auto put_b = fiberloop::spawn([&] { q.put("b"); });
    auto put_c = fiberloop::spawn([&] { q.put("X"); });
    run_briefly();
    BOOST_TEST(put_a.done());
    BOOST_TEST(!put_b.done());
    put_c.cancel();
    run_briefly();
    BOOST_TEST(put_c.done());
    BOOST_TEST(q.get_nowait() == "a");
    run_briefly();
    BOOST_TEST(q.get_nowait() == "b");
    fiberloop::await(put_b);
    BOOST_TEST(q.empty());
  });
}

// A putter woken by get_nowait() and cancelled before it ran passes the room on.
BOOST_AUTO_TEST_CASE(woken_putter_cancelled_wakes_the_next) {
  run([&] {
    Queue<int> q(1);
    q.put_nowait(0);
    auto p1 = fiberloop::spawn([&] { q.put(1); });
    auto p2 = fiberloop::spawn([&] { q.put(2); });
    run_briefly();
    BOOST_TEST(q.get_nowait() == 0);  // wakes p1
    p1.cancel();
    BOOST_CHECK_THROW(fiberloop::await(p1), CancelledError);
    fiberloop::wait_for(p2, 1.0);
    BOOST_TEST(q.get_nowait() == 2);
  });
}

// test_task_done / test_join: join() returns once every item was processed.
BOOST_AUTO_TEST_CASE(task_done_and_join) {
  Log log;
  run([&] {
    Queue<int> q;
    BOOST_CHECK_THROW(q.task_done(), std::invalid_argument);
    q.join();  // nothing unfinished: returns at once
    for (int i = 0; i < 4; ++i) q.put_nowait(i);
    auto worker = [&](std::string name) {
      for (;;) {
        int item = q.get();
        fiberloop::sleep(0);
        log.push_back(name + " " + std::to_string(item));
        q.task_done();
      }
    };
    auto w1 = fiberloop::spawn(worker, "w1");
    auto w2 = fiberloop::spawn(worker, "w2");
    q.join();
    log.push_back("joined");
    w1.cancel();
    w2.cancel();
    fiberloop::gather(w1, w2, fiberloop::return_exceptions);
    BOOST_CHECK_THROW(q.task_done(), std::invalid_argument);
  });
  BOOST_TEST(log == (Log{"w1 0", "w2 1", "w1 2", "w2 3", "joined"}),
             boost::test_tools::per_element());
}

// test_shutdown_empty
BOOST_AUTO_TEST_CASE(shutdown_empty) {
  run([&] {
    Queue<std::string> q;
    auto get_task = fiberloop::spawn([&] { return q.get(); });
    run_briefly();
    q.shutdown();
    BOOST_TEST(q.qsize() == 0u);
    q.join();
    run_briefly();
    BOOST_TEST(get_task.done());
    BOOST_CHECK_THROW(fiberloop::await(get_task), QueueShutDown);
    BOOST_CHECK_THROW(q.put("data"), QueueShutDown);
    BOOST_CHECK_THROW(q.put_nowait("data"), QueueShutDown);
    BOOST_CHECK_THROW(q.get(), QueueShutDown);
    BOOST_CHECK_THROW(q.get_nowait(), QueueShutDown);
  });
}

// test_shutdown_nonempty
BOOST_AUTO_TEST_CASE(shutdown_nonempty) {
  run([&] {
    Queue<std::string> q(1);
    q.put_nowait("data");
    auto join_task = fiberloop::spawn([&] { q.join(); });
    auto put_task = fiberloop::spawn([&] { q.put("data2"); });
    run_briefly();
    BOOST_TEST(!put_task.done());
    q.shutdown();
    BOOST_TEST(q.qsize() == 1u);
    run_briefly();
    BOOST_TEST(put_task.done());
    BOOST_CHECK_THROW(fiberloop::await(put_task), QueueShutDown);
    BOOST_TEST(q.get() == "data");
    run_briefly();
    BOOST_TEST(!join_task.done());
    BOOST_CHECK_THROW(q.put("data"), QueueShutDown);
    BOOST_CHECK_THROW(q.get(), QueueShutDown);
    BOOST_CHECK_THROW(q.get_nowait(), QueueShutDown);
    q.task_done();
    run_briefly();
    BOOST_TEST(join_task.done());
    fiberloop::await(join_task);
  });
}

// test_shutdown_immediate
BOOST_AUTO_TEST_CASE(shutdown_immediate) {
  run([&] {
    Queue<std::string> q;
    q.put_nowait("data");
    auto join_task = fiberloop::spawn([&] { q.join(); });
    q.shutdown(true);
    BOOST_TEST(q.qsize() == 0u);
    run_briefly();
    BOOST_TEST(join_task.done());
    fiberloop::await(join_task);
    BOOST_CHECK_THROW(q.get(), QueueShutDown);
    BOOST_CHECK_THROW(q.put_nowait("x"), QueueShutDown);
  });
}

// test_shutdown_immediate_with_unfinished
BOOST_AUTO_TEST_CASE(shutdown_immediate_with_unfinished) {
  run([&] {
    Queue<std::string> q;
    q.put_nowait("data");
    q.put_nowait("data");
    auto join_task = fiberloop::spawn([&] { q.join(); });
    BOOST_TEST(q.get() == "data");
    q.shutdown(true);
    BOOST_TEST(q.qsize() == 0u);
    run_briefly();
    BOOST_TEST(!join_task.done());
    q.task_done();
    run_briefly();
    BOOST_TEST(join_task.done());
    fiberloop::await(join_task);
  });
}

// Getters waiting at a shutdown all wake and see QueueShutDown.
BOOST_AUTO_TEST_CASE(shutdown_wakes_every_getter) {
  run([&] {
    Queue<int> q;
    auto g1 = fiberloop::spawn([&] { return q.get(); });
    auto g2 = fiberloop::spawn([&] { return q.get(); });
    run_briefly();
    q.shutdown();
    auto results = fiberloop::gather(g1, g2, fiberloop::return_exceptions);
    BOOST_TEST(what_of(std::get<0>(results).exception()) == "queue is shut down");
    BOOST_TEST(what_of(std::get<1>(results).exception()) == "queue is shut down");
  });
}

// test_why_are_putters_waiting: a getter emptying a full queue with
// get_nowait() wakes every putter in turn; nobody hangs.
BOOST_AUTO_TEST_CASE(why_are_putters_waiting) {
  run([&] {
    Queue<int> q(2);
    auto putter = [&](int item) { q.put(item); };
    auto getter = fiberloop::spawn([&] {
      fiberloop::sleep(0);
      std::size_t n = q.qsize();
      for (std::size_t i = 0; i < n; ++i) q.get_nowait();
    });
    auto t0 = fiberloop::spawn(putter, 0);
    auto t1 = fiberloop::spawn(putter, 1);
    auto t2 = fiberloop::spawn(putter, 2);
    auto t3 = fiberloop::spawn(putter, 3);
    fiberloop::with_timeout(1.0, [&] { fiberloop::gather(getter, t0, t1, t2, t3); });
    BOOST_TEST(q.qsize() == 2u);
  });
}

// test_why_are_getters_waiting: put_nowait() bursts wake the getters in turn.
BOOST_AUTO_TEST_CASE(why_are_getters_waiting) {
  std::vector<int> got;
  run([&] {
    Queue<int> q;
    auto getter = [&] { got.push_back(q.get()); };
    auto g1 = fiberloop::spawn(getter);
    auto g2 = fiberloop::spawn(getter);
    auto g3 = fiberloop::spawn(getter);
    auto producer = fiberloop::spawn([&] {
      fiberloop::sleep(0);
      q.put_nowait(1);
      q.put_nowait(2);
      fiberloop::sleep(0);
      q.put_nowait(3);
    });
    fiberloop::with_timeout(1.0, [&] { fiberloop::gather(g1, g2, g3, producer); });
  });
  BOOST_TEST(got == (std::vector<int>{1, 2, 3}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
