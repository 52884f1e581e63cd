// eager_start_test.cpp: TaskOptions::eager_start, after Python 3.12's eager
// task factory (test_asyncio/test_eager_task_factory.py): the first step
// runs inside create_task; a task that finishes without waiting never
// touches the loop; the default stays lazy.
#include <boost/test/unit_test.hpp>
#include <stdexcept>
#include <string>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::TaskOptions;

namespace {
const TaskOptions kEager{.eager_start = true};
}

BOOST_FIXTURE_TEST_SUITE(eager_start, LoopFixture)

BOOST_AUTO_TEST_CASE(a_task_that_does_not_wait_is_done_when_create_task_returns) {
  Log log;
  run([&] {
    log.push_back("parent before");
    auto child = loop.create_task(kEager, [&] {
      log.push_back("child runs");
      return 7;
    });
    log.push_back(child.done() ? "parent after: child done" : "parent after: child pending");
    BOOST_TEST(fiberloop::await(child) == 7);
  });
  BOOST_TEST(log == (Log{"parent before", "child runs", "parent after: child done"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(the_default_stays_lazy) {
  Log log;
  run([&] {
    auto child = loop.create_task([&] { log.push_back("child runs"); });
    log.push_back(child.done() ? "child done" : "child pending");
    fiberloop::await(child);
  });
  BOOST_TEST(log == (Log{"child pending", "child runs"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_task_that_waits_runs_to_its_first_await_then_the_parent_goes_on) {
  Log log;
  run([&] {
    auto child = loop.create_task(kEager, [&] {
      log.push_back("child starts");
      fiberloop::sleep(0);
      log.push_back("child resumes");
    });
    log.push_back("parent after create_task");
    BOOST_TEST(!child.done());
    fiberloop::await(child);
    log.push_back("parent joined");
  });
  BOOST_TEST(
      log == (Log{"child starts", "parent after create_task", "child resumes", "parent joined"}),
      boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(current_task_is_the_child_inside_and_the_parent_again_after) {
  run([&] {
    auto parent = fiberloop::current_task();
    BOOST_REQUIRE(parent);
    std::string seen_inside;
    auto child = loop.create_task(TaskOptions{.name = "eager-child", .eager_start = true},
                                  [&] { seen_inside = fiberloop::current_task()->get_name(); });
    BOOST_TEST(seen_inside == "eager-child");
    BOOST_TEST((*fiberloop::current_task() == *parent));
    fiberloop::await(child);
  });
}

BOOST_AUTO_TEST_CASE(an_exception_from_the_eager_step_is_stored_not_thrown_by_create_task) {
  run([&] {
    auto child = loop.create_task(kEager, []() -> int { throw std::runtime_error("eager boom"); });
    BOOST_TEST(child.done());
    BOOST_CHECK_EXCEPTION(
        fiberloop::await(child), std::runtime_error,
        [](const std::runtime_error& e) { return std::string(e.what()) == "eager boom"; });
  });
}

BOOST_AUTO_TEST_CASE(outside_a_running_loop_eager_start_falls_back_to_lazy) {
  Log log;
  auto child = loop.create_task(kEager, [&] { log.push_back("child runs"); });
  BOOST_TEST(!child.done());
  BOOST_TEST(log.empty());
  loop.run_until_complete(child);
  BOOST_TEST(log == (Log{"child runs"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(an_eager_task_can_be_cancelled_at_its_first_await) {
  run([&] {
    bool cleaned_up = false;
    auto child = loop.create_task(kEager, [&] {
      struct Cleanup {
        bool& flag;
        ~Cleanup() { flag = true; }
      } cleanup{cleaned_up};
      fiberloop::sleep(3600);
    });
    BOOST_TEST(child.cancel());
    BOOST_CHECK_THROW(fiberloop::await(child), fiberloop::CancelledError);
    BOOST_TEST(child.cancelled());
    BOOST_TEST(cleaned_up);
  });
}

BOOST_AUTO_TEST_CASE(eager_tasks_nest) {
  Log log;
  run([&] {
    auto outer = loop.create_task(kEager, [&] {
      log.push_back("outer starts");
      auto inner = loop.create_task(kEager, [&] {
        log.push_back("inner starts");
        fiberloop::sleep(0);
        log.push_back("inner ends");
        return 1;
      });
      log.push_back("outer after inner's first step");
      return fiberloop::await(inner) + 1;
    });
    log.push_back("main after outer's first step");
    BOOST_TEST(fiberloop::await(outer) == 2);
  });
  BOOST_TEST(log == (Log{"outer starts", "inner starts", "outer after inner's first step",
                         "main after outer's first step", "inner ends"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
