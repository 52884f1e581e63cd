// Each task has its own C++ exception state: what `throw;` rethrows, what
// std::current_exception() and std::uncaught_exceptions() read, are the
// task's own across every wait — as each coroutine's are in asyncio.
#include <boost/test/unit_test.hpp>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

namespace fl = fiberloop;

namespace {

// waits_then_rethrows(name) throws its own error, waits inside the catch
// block (asyncio's `except: await cleanup(); raise`), then rethrows with
// `throw;`.
void waits_then_rethrows(std::string name) {
  try {
    throw std::runtime_error(name + "'s own error");
  } catch (...) {
    fl::sleep(0);
    fl::sleep(0.001);
    throw;
  }
}

// WaitsWhenDestroyed waits in its destructor: the C++ spelling of
// `finally: await x.aclose()`.
struct WaitsWhenDestroyed {
  double seconds;
  int* seen_uncaught;
  ~WaitsWhenDestroyed() {
    fl::sleep(seconds);
    *seen_uncaught = std::uncaught_exceptions();
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(exception_state, LoopFixture)

BOOST_AUTO_TEST_CASE(two_tasks_that_wait_in_a_catch_rethrow_their_own_exceptions) {
  auto a = loop.create_task(waits_then_rethrows, std::string("A"));
  auto b = loop.create_task(waits_then_rethrows, std::string("B"));
  run([&] {
    fl::wait(std::vector{a, b});
  });
  BOOST_TEST(what_of(a.exception()) == "A's own error");
  BOOST_TEST(what_of(b.exception()) == "B's own error");
}

BOOST_AUTO_TEST_CASE(ten_tasks_see_their_own_current_exception_after_each_wait) {
  std::vector<fl::Task<std::string>> tasks;
  for (int i = 0; i < 10; ++i) {
    tasks.push_back(loop.create_task([i]() -> std::string {
      try {
        throw std::runtime_error("error " + std::to_string(i));
      } catch (...) {
        std::string seen;
        for (int round = 0; round < 3; ++round) {
          fl::sleep(0.001 * ((i + round) % 4));
          seen += what_of(std::current_exception()) + ";";
        }
        std::exception_ptr mine = std::current_exception();
        fl::sleep(0);
        try {
          std::rethrow_exception(mine);
        } catch (const std::exception& e) {
          seen += e.what();
        }
        return seen;
      }
    }));
  }
  run([&] {
    for (auto& t : tasks) fl::await(t);
  });
  for (int i = 0; i < 10; ++i) {
    std::string e = "error " + std::to_string(i);
    BOOST_TEST(tasks[i].result() == e + ";" + e + ";" + e + ";" + e);
  }
}

BOOST_AUTO_TEST_CASE(nested_catch_blocks_across_waits_unwind_in_order) {
  auto nested = [](std::string name) {
    std::string seen;
    try {
      throw std::runtime_error(name + " outer");
    } catch (...) {
      fl::sleep(0);
      try {
        throw std::logic_error(name + " inner");
      } catch (...) {
        fl::sleep(0.001);
        seen += what_of(std::current_exception()) + ",";
      }
      fl::sleep(0);
      seen += what_of(std::current_exception());
    }
    fl::sleep(0);
    if (std::current_exception()) seen += ",leaked";
    return seen;
  };
  auto a = loop.create_task(nested, std::string("A"));
  auto b = loop.create_task(nested, std::string("B"));
  run([&] {
    fl::await(a);
    fl::await(b);
  });
  BOOST_TEST(a.result() == "A inner,A outer");
  BOOST_TEST(b.result() == "B inner,B outer");
}

BOOST_AUTO_TEST_CASE(a_generator_that_waits_in_a_catch_keeps_its_exception) {
  // The generator's body waits (its wait suspends the driving task) inside
  // a catch block while another task throws and catches its own.
  auto drive = loop.create_task([] {
    fl::Generator<std::string> gen([](auto& g) {
      try {
        throw std::runtime_error("generator's error");
      } catch (...) {
        fl::sleep(0.002);
        g.yield(what_of(std::current_exception()));
        fl::sleep(0);
        g.yield(what_of(std::current_exception()));
      }
    });
    std::string first = *gen.send();
    std::string second = *gen.send();
    return first + "|" + second;
  });
  auto other = loop.create_task([] {
    try {
      throw std::runtime_error("other's error");
    } catch (...) {
      fl::sleep(0.004);
      return what_of(std::current_exception());
    }
  });
  run([&] {
    fl::await(drive);
    fl::await(other);
  });
  BOOST_TEST(drive.result() == "generator's error|generator's error");
  BOOST_TEST(other.result() == "other's error");
}

BOOST_AUTO_TEST_CASE(uncaught_exceptions_counts_only_the_tasks_own_unwinding) {
  int seen_in_destructor = -1;
  auto unwinding = loop.create_task([&] {
    WaitsWhenDestroyed waits{0.01, &seen_in_destructor};
    throw std::runtime_error("unwinds through a waiting destructor");
  });
  int seen_elsewhere = -1;
  auto bystander = loop.create_task([&] {
    fl::sleep(0.005);  // while the other task is parked in its destructor
    seen_elsewhere = std::uncaught_exceptions();
  });
  run([&] {
    fl::wait(std::vector{unwinding, bystander});
  });
  BOOST_TEST(seen_elsewhere == 0);
  BOOST_TEST(seen_in_destructor == 1);
  BOOST_TEST(what_of(unwinding.exception()) == "unwinds through a waiting destructor");
}

BOOST_AUTO_TEST_CASE(a_timeout_scope_left_normally_reports_nothing_while_another_task_unwinds) {
  // The scope is entered with nothing in flight and left while another task
  // is parked in a destructor of its unwinding: before the fix the scope saw
  // that task's exception in flight and reported a misuse that never happened.
  bool expired = false;
  auto scoped = loop.create_task([&] {
    fl::Timeout t = fl::timeout(0.005);
    try {
      fl::sleep(1);
    } catch (const fl::CancelledError&) {
      expired = t.expired();
    }
  });
  int seen = -1;
  auto unwinding = loop.create_task([&] {
    fl::sleep(0.001);
    WaitsWhenDestroyed waits{0.05, &seen};
    throw std::runtime_error("unwinding");
  });
  run([&] {
    fl::wait(std::vector{unwinding, scoped});
  });
  BOOST_TEST(expired);
  BOOST_TEST(reports.empty(), join(reports));
  BOOST_TEST(!scoped.exception());
  BOOST_TEST(what_of(unwinding.exception()) == "unwinding");
}

BOOST_AUTO_TEST_CASE(the_loop_thread_keeps_its_own_exception_while_a_task_waits_in_a_catch) {
  // Plain code that runs the loop inside its own catch block, while a task
  // stays parked inside a catch block of its own.
  auto parked = loop.create_task([] {
    try {
      throw std::runtime_error("the parked task's error");
    } catch (...) {
      fl::sleep(100);
    }
  });
  std::string after;
  try {
    throw std::runtime_error("the caller's error");
  } catch (...) {
    loop.run_until_complete(loop.create_task([] { fl::sleep(0.001); }));
    after = what_of(std::current_exception());
  }
  BOOST_TEST(after == "the caller's error");
  BOOST_TEST(!std::current_exception());
  parked.cancel();
  run([&] { fl::wait(std::vector{parked}); });
  BOOST_TEST(parked.cancelled());
  BOOST_TEST(!std::current_exception());
}

BOOST_AUTO_TEST_SUITE_END()

// fiberloop::run() rethrows exactly its main task's exception, however the
// tasks it cancels at its end throw, catch and wait.
BOOST_AUTO_TEST_CASE(run_rethrows_the_main_tasks_own_exception) {
  auto main_fn = [] {
    // Parked inside a catch block when main fails: the shape of a server's
    // accept loop pausing after an error.
    fl::spawn([] {
      try {
        throw std::runtime_error("a leftover task's error");
      } catch (...) {
        fl::sleep(100);
      }
    });
    // Fails again while run() cancels it.
    fl::spawn([] {
      try {
        fl::sleep(100);
      } catch (const fl::CancelledError&) {
        throw std::logic_error("failed while cancelled");
      }
    });
    fl::sleep(0.001);
    throw std::runtime_error("main's own error");
  };
  std::string caught;
  try {
    fl::run(main_fn);
  } catch (const std::exception& e) {
    caught = e.what();
  }
  BOOST_TEST(caught == "main's own error");
  BOOST_TEST(!std::current_exception());
}
