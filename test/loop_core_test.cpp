// The loop core (detail/loop_core.hpp): the seam futures, tasks and handles
// schedule through, and the ownership checks (FIBERLOOP_ASSERT) at it.
#include <boost/test/unit_test.hpp>
#include <string>
#include <thread>
#include <vector>

#include "death.hpp"
#include "fiberloop/fiberloop.hpp"

namespace fl = fiberloop;
namespace fd = fiberloop::detail;

BOOST_AUTO_TEST_CASE(core_is_the_loops_and_links_back) {
  fl::EventLoop loop;
  fd::LoopCore& core = loop.core();
  BOOST_TEST(&core.owner() == &loop);
  BOOST_TEST(core.link()->core == &core);
  BOOST_TEST(loop.link().get() == core.link().get());
  // A future made by the loop reaches the loop through the core.
  auto fut = loop.create_future<int>();
  BOOST_TEST(&fut.get_loop() == &loop);
  BOOST_TEST(fut.state_ptr()->core_or_null() == &core);
}

BOOST_AUTO_TEST_CASE(a_future_outliving_its_loop_sees_no_core) {
  fl::Future<int> fut;
  {
    fl::EventLoop loop;
    fut = loop.create_future<int>();
  }
  BOOST_TEST(fut.state_ptr()->core_or_null() == nullptr);
  BOOST_TEST(fut.state_ptr()->loop_or_null() == nullptr);
  BOOST_CHECK_THROW(fut.get_loop(), fl::RuntimeError);
  BOOST_CHECK_THROW(fut.set_result(1), fl::RuntimeError);
}

BOOST_AUTO_TEST_CASE(live_list_adds_and_removes_in_any_order) {
  fl::EventLoop loop;
  fd::LoopCore& core = loop.core();
  fd::LiveTask a, b, c;
  BOOST_TEST(!core.remove_live(&a));  // not listed: nothing happens
  core.add_live(&a);
  core.add_live(&b);
  core.add_live(&c);
  BOOST_TEST(core.first_live() == &c);
  BOOST_TEST(core.remove_live(&b));  // the middle one
  BOOST_TEST(c.next_live == &a);
  BOOST_TEST(a.prev_live == &c);
  BOOST_TEST(!core.remove_live(&b));  // twice: the second is refused
  BOOST_TEST(core.remove_live(&c));   // the head
  BOOST_TEST(core.first_live() == &a);
  BOOST_TEST(core.remove_live(&a));
  BOOST_TEST(core.first_live() == nullptr);
}

BOOST_AUTO_TEST_CASE(tasks_are_on_the_live_list_until_they_end) {
  fl::EventLoop loop;
  auto waiter = loop.create_future<void>();
  auto t = loop.create_task([waiter] { fl::await(waiter); });
  BOOST_TEST(loop.core().first_live() != nullptr);
  BOOST_TEST(loop.all_tasks().size() == 1u);
  loop.call_soon([waiter] { waiter.set_result(); });
  loop.run_until_complete(t);
  BOOST_TEST(loop.core().first_live() == nullptr);
  BOOST_TEST(loop.all_tasks().empty());
}

// A post from another thread made before a call_soon runs before it: the
// core takes the posts in first (one FIFO, as asyncio's).
BOOST_AUTO_TEST_CASE(posts_from_other_threads_join_the_queue_first) {
  fl::EventLoop loop;
  std::vector<std::string> order;
  std::thread poster([&] { loop.call_soon_threadsafe([&] { order.push_back("post"); }); });
  poster.join();
  BOOST_TEST(loop.core().posts_pending());
  loop.call_soon([&] { order.push_back("soon"); });
  loop.run_once();
  BOOST_TEST(order == (std::vector<std::string>{"post", "soon"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(the_budget_clock_counts_iterations) {
  fl::EventLoop loop;
  std::uint64_t before = loop.core().iteration();
  for (int i = 0; i < 2; ++i) {
    loop.call_soon([] {});  // something ready: the iteration does not wait
    loop.run_once();
  }
  BOOST_TEST(loop.core().iteration() == before + 2);
  loop.set_task_budget(7);
  BOOST_TEST(loop.core().task_budget() == 7u);
}

#if FIBERLOOP_ASSERTIONS
// The ownership checks stop at the broken protocol, with what was broken.
BOOST_AUTO_TEST_CASE(a_callback_queued_as_a_task_step_is_refused) {
  Death d = die_in_child([] {
    fl::EventLoop loop;
    fd::Ref<fd::HandleState> h = loop.core().make_handle([] {});
    loop.core().requeue_step(h.get());  // not a task's step: the queue would leak its reference
  });
  BOOST_TEST(d.signal == SIGABRT);
  BOOST_TEST(d.stderr_text.find("fiberloop: internal check failed: requeue_step() of a handle "
                                "that is no task's step") != std::string::npos,
             d.stderr_text);
}

BOOST_AUTO_TEST_CASE(a_task_listed_twice_is_refused) {
  Death d = die_in_child([] {
    fl::EventLoop loop;
    fd::LiveTask t;
    loop.core().add_live(&t);
    loop.core().add_live(&t);
  });
  BOOST_TEST(d.signal == SIGABRT);
  BOOST_TEST(d.stderr_text.find("a task listed twice") != std::string::npos, d.stderr_text);
}

BOOST_AUTO_TEST_CASE(a_timer_scheduled_twice_is_refused) {
  Death d = die_in_child([] {
    fl::EventLoop loop;
    fd::Timers timers(loop.core());
    fd::Ref<fd::HandleState> h = loop.core().make_handle([] {});
    timers.schedule(h.get(), 0);
    timers.schedule(h.get(), 0);
  });
  BOOST_TEST(d.signal == SIGABRT);
  BOOST_TEST(d.stderr_text.find("in the heap at most once") != std::string::npos, d.stderr_text);
}
#else
BOOST_AUTO_TEST_CASE(assertions_are_off_in_this_build) {
  BOOST_TEST_MESSAGE("FIBERLOOP_ASSERTIONS is 0 (a release build): no death tests for them");
  BOOST_TEST(FIBERLOOP_ASSERTIONS == 0);
}
#endif
