// primitive_lifetime_test.cpp: a lock, event, condition, semaphore, barrier
// or queue destroyed while tasks wait on it (issue 16). Each waiter must end
// with RuntimeError naming the primitive and the call, or with its own
// CancelledError, and never touch the destroyed object again.
#include <boost/test/unit_test.hpp>
#include <memory>
#include <string>

#include "death.hpp"
#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::Barrier;
using fiberloop::BoundedSemaphore;
using fiberloop::Condition;
using fiberloop::Event;
using fiberloop::LifoQueue;
using fiberloop::Lock;
using fiberloop::PriorityQueue;
using fiberloop::Queue;
using fiberloop::Semaphore;

namespace {

// run_briefly(n) lets the other tasks take n steps.
void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}

// ending_of(t) waits for t and tells how it ended: the what() of the
// RuntimeError it threw, "CancelledError", or "returned". Any other
// exception escapes and fails the test.
template <class T>
std::string ending_of(const fiberloop::Task<T>& t) {
  try {
    fiberloop::await(t);
    return "returned";
  } catch (const fiberloop::RuntimeError& e) {
    return e.what();
  } catch (const fiberloop::CancelledError&) {
    return "CancelledError";
  }
}

// check_tasks_still_meet() has two fresh tasks meet through a fresh Event:
// the loop schedules and wakes tasks as before the destruction.
void check_tasks_still_meet() {
  Event go;
  auto waiter = fiberloop::spawn([&] {
    go.wait();
    return 7;
  });
  auto setter = fiberloop::spawn([&] { go.set(); });
  BOOST_TEST(fiberloop::await(waiter) == 7);
  fiberloop::await(setter);
}

// A short bound: on a build without the fix a waiter is never woken, and the
// test should fail soon rather than after the fixture's default ten seconds.
constexpr double limit = 2.0;

const char* const lock_acquire = "Lock destroyed while a task was waiting in acquire()";
const char* const queue_get = "Queue destroyed while a task was waiting in get()";

// check_child_ran_clean(d): the forked child's run() returned and the child
// exited without a crash, a sanitizer report or anything else on stderr.
void check_child_ran_clean(const Death& d) {
  BOOST_TEST(d.signal == 0);
  BOOST_TEST(d.exit_status == 0);
  BOOST_TEST(d.stderr_text.find("pure virtual") == std::string::npos, d.stderr_text);
  BOOST_TEST(d.stderr_text.find("Sanitizer") == std::string::npos, d.stderr_text);
  BOOST_TEST(d.stderr_text.find("runtime error") == std::string::npos, d.stderr_text);
  BOOST_TEST(d.stderr_text.empty(), d.stderr_text);
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(primitive_lifetime, LoopFixture)

// ---- each primitive, destroyed while a task waits on it ----

BOOST_AUTO_TEST_CASE(queue_destroyed_while_two_getters_wait) {
  run(
      [&] {
        auto q = std::make_unique<Queue<int>>();
        auto g1 = fiberloop::spawn([&] { return q->get(); });
        auto g2 = fiberloop::spawn([&] { return q->get(); });
        run_briefly();
        q.reset();
        BOOST_TEST(ending_of(g1) == queue_get);
        BOOST_TEST(ending_of(g2) == queue_get);
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(queue_destroyed_while_a_putter_waits) {
  run(
      [&] {
        auto q = std::make_unique<Queue<int>>(1);
        q->put_nowait(1);
        auto putter = fiberloop::spawn([&] { q->put(2); });
        run_briefly();
        q.reset();
        BOOST_TEST(ending_of(putter) == "Queue destroyed while a task was waiting in put()");
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(queue_destroyed_while_a_task_waits_in_join) {
  run(
      [&] {
        auto q = std::make_unique<Queue<int>>();
        q->put_nowait(1);
        auto joiner = fiberloop::spawn([&] { q->join(); });
        run_briefly();
        q.reset();
        BOOST_TEST(ending_of(joiner) == "Queue destroyed while a task was waiting in join()");
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(priority_queue_destroyed_while_a_getter_waits) {
  run(
      [&] {
        auto q = std::make_unique<PriorityQueue<int>>();
        auto getter = fiberloop::spawn([&] { return q->get(); });
        run_briefly();
        q.reset();
        BOOST_TEST(ending_of(getter) ==
                   "PriorityQueue destroyed while a task was waiting in get()");
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(lifo_queue_destroyed_while_a_putter_waits) {
  run(
      [&] {
        auto q = std::make_unique<LifoQueue<std::string>>(1);
        q->put_nowait("a");
        auto putter = fiberloop::spawn([&] { q->put("b"); });
        run_briefly();
        q.reset();
        BOOST_TEST(ending_of(putter) == "LifoQueue destroyed while a task was waiting in put()");
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(lock_destroyed_while_a_task_waits_in_acquire) {
  run(
      [&] {
        auto lock = std::make_unique<Lock>();
        lock->acquire();
        auto waiter = fiberloop::spawn([&] { lock->acquire(); });
        run_briefly();
        lock.reset();
        BOOST_TEST(ending_of(waiter) == lock_acquire);
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(event_destroyed_while_a_task_waits) {
  run(
      [&] {
        auto event = std::make_unique<Event>();
        auto waiter = fiberloop::spawn([&] { event->wait(); });
        run_briefly();
        event.reset();
        BOOST_TEST(ending_of(waiter) == "Event destroyed while a task was waiting in wait()");
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(condition_destroyed_while_a_task_waits_for_a_notification) {
  run(
      [&] {
        auto cond = std::make_unique<Condition>();
        auto waiter = fiberloop::spawn([&] {
          cond->acquire();
          cond->wait();
        });
        run_briefly();
        cond.reset();
        BOOST_TEST(ending_of(waiter) == "Condition destroyed while a task was waiting in wait()");
        check_tasks_still_meet();
      },
      limit);
}

// Notified, the waiter then waits for the lock, which dies with the condition.
BOOST_AUTO_TEST_CASE(condition_destroyed_while_a_notified_task_waits_for_its_lock) {
  run(
      [&] {
        auto cond = std::make_unique<Condition>();
        auto waiter = fiberloop::spawn([&] {
          cond->acquire();
          cond->wait();
        });
        run_briefly();
        cond->acquire();
        cond->notify();
        run_briefly();  // the waiter now waits to reacquire the lock we hold
        cond.reset();
        BOOST_TEST(ending_of(waiter) == "Condition destroyed while a task was waiting in wait()");
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(condition_destroyed_while_a_task_waits_in_acquire) {
  run(
      [&] {
        auto cond = std::make_unique<Condition>();
        cond->acquire();
        auto waiter = fiberloop::spawn([&] { cond->acquire(); });
        run_briefly();
        cond.reset();
        BOOST_TEST(ending_of(waiter) ==
                   "Condition destroyed while a task was waiting in acquire()");
        check_tasks_still_meet();
      },
      limit);
}

// A condition over a lock that outlives it: the waiter leaves without the
// lock, and the lock goes on working.
BOOST_AUTO_TEST_CASE(condition_on_a_shared_lock_destroyed_while_a_task_waits) {
  run(
      [&] {
        Lock lock;
        auto cond = std::make_unique<Condition>(lock);
        auto waiter = fiberloop::spawn([&] {
          cond->acquire();
          cond->wait();
        });
        run_briefly();
        cond.reset();
        BOOST_TEST(ending_of(waiter) == "Condition destroyed while a task was waiting in wait()");
        BOOST_TEST(!lock.locked());
        lock.acquire();
        auto other = fiberloop::spawn([&] { lock.acquire(); });
        run_briefly();
        lock.release();
        fiberloop::await(other);
        BOOST_TEST(lock.locked());
        lock.release();
      },
      limit);
}

// Notified, the waiter waits for the shared lock when the condition dies; it
// gets the lock but must not keep it, as a waiter woken by the destruction.
BOOST_AUTO_TEST_CASE(condition_on_a_shared_lock_destroyed_while_a_task_reacquires) {
  run(
      [&] {
        Lock lock;
        auto cond = std::make_unique<Condition>(lock);
        auto waiter = fiberloop::spawn([&] {
          cond->acquire();
          cond->wait();
        });
        run_briefly();
        lock.acquire();
        cond->notify();
        run_briefly();  // the waiter now waits for the lock we hold
        cond.reset();
        lock.release();
        BOOST_TEST(ending_of(waiter) == "Condition destroyed while a task was waiting in wait()");
        BOOST_TEST(!lock.locked());
        BOOST_TEST(lock.try_lock());
        lock.release();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(semaphore_destroyed_while_a_task_waits_in_acquire) {
  run(
      [&] {
        auto sem = std::make_unique<Semaphore>(0);
        auto waiter = fiberloop::spawn([&] { sem->acquire(); });
        run_briefly();
        sem.reset();
        BOOST_TEST(ending_of(waiter) ==
                   "Semaphore destroyed while a task was waiting in acquire()");
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(bounded_semaphore_destroyed_while_a_task_waits_in_acquire) {
  run(
      [&] {
        auto sem = std::make_unique<BoundedSemaphore>(1);
        sem->acquire();
        auto waiter = fiberloop::spawn([&] { sem->acquire(); });
        run_briefly();
        sem.reset();
        BOOST_TEST(ending_of(waiter) ==
                   "BoundedSemaphore destroyed while a task was waiting in acquire()");
        check_tasks_still_meet();
      },
      limit);
}

BOOST_AUTO_TEST_CASE(barrier_destroyed_while_two_tasks_wait) {
  run(
      [&] {
        auto barrier = std::make_unique<Barrier>(3);
        auto w1 = fiberloop::spawn([&] { return barrier->wait(); });
        auto w2 = fiberloop::spawn([&] { return barrier->wait(); });
        run_briefly(2);
        BOOST_TEST(barrier->n_waiting() == 2u);
        barrier.reset();
        BOOST_TEST(ending_of(w1) == "Barrier destroyed while a task was waiting in wait()");
        BOOST_TEST(ending_of(w2) == "Barrier destroyed while a task was waiting in wait()");
        check_tasks_still_meet();
      },
      limit);
}

// ---- woken normally, destroyed before the waiter ran ----

BOOST_AUTO_TEST_CASE(lock_handed_to_a_waiter_then_destroyed_before_it_ran) {
  run(
      [&] {
        auto lock = std::make_unique<Lock>();
        lock->acquire();
        auto waiter = fiberloop::spawn([&] { lock->acquire(); });
        run_briefly();
        lock->release();  // hands the lock to the waiter, which has not run yet
        lock.reset();
        BOOST_TEST(ending_of(waiter) == lock_acquire);
      },
      limit);
}

// put_nowait() pops the getter out of the queue's waiters as it wakes it.
BOOST_AUTO_TEST_CASE(queue_item_handed_to_a_getter_then_destroyed_before_it_ran) {
  run(
      [&] {
        auto q = std::make_unique<Queue<int>>();
        auto getter = fiberloop::spawn([&] { return q->get(); });
        run_briefly();
        q->put_nowait(1);
        q.reset();
        BOOST_TEST(ending_of(getter) == queue_get);
      },
      limit);
}

BOOST_AUTO_TEST_CASE(queue_joiner_released_then_destroyed_before_it_ran) {
  run(
      [&] {
        auto q = std::make_unique<Queue<int>>();
        q->put_nowait(1);
        auto joiner = fiberloop::spawn([&] { q->join(); });
        run_briefly();
        q->get_nowait();
        q->task_done();
        q.reset();
        BOOST_TEST(ending_of(joiner) == "Queue destroyed while a task was waiting in join()");
      },
      limit);
}

BOOST_AUTO_TEST_CASE(event_set_then_destroyed_before_the_waiter_ran) {
  run(
      [&] {
        auto event = std::make_unique<Event>();
        auto waiter = fiberloop::spawn([&] { event->wait(); });
        run_briefly();
        event->set();
        event.reset();
        BOOST_TEST(ending_of(waiter) == "Event destroyed while a task was waiting in wait()");
      },
      limit);
}

BOOST_AUTO_TEST_CASE(condition_notified_then_destroyed_before_the_waiter_ran) {
  run(
      [&] {
        auto cond = std::make_unique<Condition>();
        auto waiter = fiberloop::spawn([&] {
          cond->acquire();
          cond->wait();
        });
        run_briefly();
        cond->acquire();
        cond->notify();
        cond->release();
        cond.reset();
        BOOST_TEST(ending_of(waiter) == "Condition destroyed while a task was waiting in wait()");
      },
      limit);
}

BOOST_AUTO_TEST_CASE(semaphore_released_to_a_waiter_then_destroyed_before_it_ran) {
  run(
      [&] {
        auto sem = std::make_unique<Semaphore>(0);
        auto waiter = fiberloop::spawn([&] { sem->acquire(); });
        run_briefly();
        sem->release();
        sem.reset();
        BOOST_TEST(ending_of(waiter) ==
                   "Semaphore destroyed while a task was waiting in acquire()");
      },
      limit);
}

BOOST_AUTO_TEST_CASE(barrier_filled_then_destroyed_before_the_waiters_ran) {
  run(
      [&] {
        auto barrier = std::make_unique<Barrier>(2);
        auto waiter = fiberloop::spawn([&] { return barrier->wait(); });
        run_briefly();
        auto last = fiberloop::spawn([&] { return barrier->wait(); });
        run_briefly();  // the last arrival notified the first and left
        BOOST_TEST(last.done());
        barrier.reset();
        BOOST_TEST(ending_of(waiter) == "Barrier destroyed while a task was waiting in wait()");
      },
      limit);
}

// ---- cancellation and destruction together ----

// Woken by the destruction, then cancelled before it ran.
BOOST_AUTO_TEST_CASE(lock_destroyed_then_its_waiter_cancelled_ends_cancelled) {
  run(
      [&] {
        auto lock = std::make_unique<Lock>();
        lock->acquire();
        auto waiter = fiberloop::spawn([&] { lock->acquire(); });
        run_briefly();
        lock.reset();
        run_briefly();  // the waiter is woken: its step is queued
        BOOST_TEST(!waiter.done());
        waiter.cancel();
        BOOST_TEST(ending_of(waiter) == "CancelledError");
        BOOST_TEST(waiter.cancelled());
      },
      limit);
}

BOOST_AUTO_TEST_CASE(queue_getter_cancelled_then_queue_destroyed_ends_cancelled) {
  run(
      [&] {
        auto q = std::make_unique<Queue<int>>();
        auto getter = fiberloop::spawn([&] { return q->get(); });
        run_briefly();
        getter.cancel();
        q.reset();
        BOOST_TEST(ending_of(getter) == "CancelledError");
      },
      limit);
}

BOOST_AUTO_TEST_CASE(condition_destroyed_then_its_waiter_cancelled_ends_cancelled) {
  run(
      [&] {
        auto cond = std::make_unique<Condition>();
        auto waiter = fiberloop::spawn([&] {
          cond->acquire();
          cond->wait();
        });
        run_briefly();
        cond.reset();
        waiter.cancel();
        BOOST_TEST(ending_of(waiter) == "CancelledError");
      },
      limit);
}

BOOST_AUTO_TEST_CASE(barrier_destroyed_then_its_waiter_cancelled_ends_cancelled) {
  run(
      [&] {
        auto barrier = std::make_unique<Barrier>(2);
        auto waiter = fiberloop::spawn([&] { return barrier->wait(); });
        run_briefly();
        barrier.reset();
        waiter.cancel();
        BOOST_TEST(ending_of(waiter) == "CancelledError");
      },
      limit);
}

// The waiter never runs again: close() unwinds its fiber, and the unwinding
// must not take it out of the destroyed queue's waiters.
BOOST_AUTO_TEST_CASE(queue_destroyed_then_its_waiter_unwound_by_close) {
  auto q = std::make_unique<Queue<int>>();
  loop.create_task([&] { return q->get(); });
  loop.run_once();
  q.reset();
  loop.close();
  expected_reports = 1;  // "Task was destroyed but it is pending!"
}

BOOST_AUTO_TEST_CASE(condition_destroyed_then_its_waiter_unwound_by_close) {
  auto cond = std::make_unique<Condition>();
  loop.create_task([&] {
    cond->acquire();
    cond->wait();
  });
  loop.run_once();
  cond.reset();
  loop.close();
  expected_reports = 1;
}

// ---- the shape of issue 16: main's frame holds the primitive ----

BOOST_AUTO_TEST_CASE(run_returns_when_main_leaves_a_consumer_on_its_queue) {
  Death d = die_in_child([] {
    fiberloop::run([] {
      Queue<int> q;
      auto consumer = fiberloop::spawn([&q] { return q.get(); });
      fiberloop::sleep(0);  // the consumer parks in get()
    });
  });
  check_child_ran_clean(d);
}

BOOST_AUTO_TEST_CASE(run_returns_when_main_leaves_a_task_waiting_on_its_lock) {
  Death d = die_in_child([] {
    fiberloop::run([] {
      Lock lock;
      lock.acquire();
      auto waiter = fiberloop::spawn([&lock] { lock.acquire(); });
      fiberloop::sleep(0);  // the waiter parks in acquire()
    });
  });
  check_child_ran_clean(d);
}

BOOST_AUTO_TEST_SUITE_END()
