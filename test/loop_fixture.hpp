// loop_fixture.hpp: the fixture every loop test starts from.
#pragma once

#include <boost/test/unit_test.hpp>
#include <fiberloop/fiberloop.hpp>
#include <string>
#include <vector>

// LoopFixture gives each test a fresh loop whose exception handler records
// what it is told. Teardown checks the test left nothing behind: no live
// task, no unexpected report, every fiber stack back in the pool.
struct LoopFixture {
  LoopFixture()
      : stacks_before(fiberloop::StackPool::local().mapped() -
                      fiberloop::StackPool::local().cached()) {
    loop.set_exception_handler(
        [this](fiberloop::EventLoop&, const fiberloop::ExceptionContext& ctx) {
          reports.push_back(ctx.message);
        });
  }

  ~LoopFixture() {
    BOOST_CHECK_MESSAGE(loop.all_tasks().empty(),
                        "the test left " << loop.all_tasks().size() << " task(s) pending");
    if (!loop.is_closed() && !loop.is_running()) loop.close();
    BOOST_CHECK_MESSAGE(reports.size() == expected_reports,
                        "unexpected exception-handler reports: " << join(reports));
    auto& pool = fiberloop::StackPool::local();
    BOOST_CHECK_MESSAGE(pool.mapped() - pool.cached() == stacks_before, "fiber stacks leaked");
  }

  // run(fn) runs fn as a task to completion and returns its result, with a
  // bound: a test that would hang fails after `limit` seconds of loop time.
  template <class Fn>
  auto run(Fn&& fn, double limit = 10.0) {
    auto task = loop.create_task(std::forward<Fn>(fn));
    auto guard = loop.call_later(limit, [this] {
      timed_out = true;
      loop.stop();
    });
    struct Cancel {
      fiberloop::TimerHandle& h;
      ~Cancel() { h.cancel(); }
    } cancel{guard};
    try {
      return loop.run_until_complete(task);
    } catch (const fiberloop::RuntimeError&) {
      if (timed_out) {
        task.cancel();
        loop.run_until_complete(task.get_loop().create_task([] {}));  // let the cancellation land
        BOOST_FAIL("the test task did not finish within " << limit << " s of loop time");
      }
      throw;
    }
  }

  // run_bounded() runs the loop until a callback stops it; a loop that is not
  // stopped within `limit` seconds fails the test instead of hanging it.
  void run_bounded(double limit = 5.0) {
    bool hit = false;
    auto guard = loop.call_later(limit, [this, &hit] {
      hit = true;
      loop.stop();
    });
    loop.run_forever();
    guard.cancel();
    BOOST_REQUIRE_MESSAGE(!hit, "the loop was not stopped within " << limit << " s");
  }

  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& m : v) s += "[" + m + "] ";
    return s;
  }

  fiberloop::EventLoop loop;
  std::vector<std::string> reports;  // messages given to the exception handler
  std::size_t expected_reports = 0;  // a test that expects reports sets this
  bool timed_out = false;
  std::size_t stacks_before;
};
