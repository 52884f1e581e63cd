// The unwind rule (FiberUnwind must not be swallowed, no wait while a fiber
// unwinds) holds with fiberloop's own message whether the consumer builds
// with NDEBUG or not: meson builds this file twice, once with -DNDEBUG
// (issue 6, item 8). Each case dies in a forked child.
#include <boost/test/unit_test.hpp>
#include <fiberloop/fiberloop.hpp>
#include <string>

#include "death.hpp"

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Every death here is an abort with fiberloop's message, never Boost's
// assertion, a hang, or another error.
void check_fiberloop_abort(const Death& d, const std::string& expected) {
  BOOST_TEST(d.signal == SIGABRT, "signal " << d.signal << ", stderr: " << d.stderr_text);
  BOOST_TEST(contains(d.stderr_text, "fiberloop: "), d.stderr_text);
  BOOST_TEST(contains(d.stderr_text, expected), d.stderr_text);
  BOOST_TEST(!contains(d.stderr_text, "Assertion"), d.stderr_text);
  BOOST_TEST(!contains(d.stderr_text, "no running event loop"), d.stderr_text);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unwind_rule)

BOOST_AUTO_TEST_CASE(build_mode_of_this_executable) {
#ifdef NDEBUG
  BOOST_TEST_MESSAGE("built with NDEBUG");
#else
  BOOST_TEST_MESSAGE("built without NDEBUG");
#endif
  BOOST_TEST(true);
}

BOOST_AUTO_TEST_CASE(a_generator_body_swallowing_fiber_unwind_aborts_with_our_message) {
  Death d = die_in_child([] {
    fiberloop::Generator<int> gen([](auto& g) {
      try {
        g.yield(1);
      } catch (...) {  // swallows FiberUnwind
      }
    });
    gen.send();
    gen.close();
  });
  check_fiberloop_abort(d, "swallowed FiberUnwind");
}

BOOST_AUTO_TEST_CASE(a_task_body_swallowing_fiber_unwind_aborts_with_our_message) {
  Death d = die_in_child([] {
    fiberloop::EventLoop loop;
    loop.create_task([] {
      try {
        fiberloop::sleep(3600);
      } catch (...) {  // swallows FiberUnwind at close()
      }
    });
    loop.run_once();
    loop.close();
  });
  check_fiberloop_abort(d, "swallowed FiberUnwind");
}

BOOST_AUTO_TEST_CASE(swallowing_and_waiting_again_aborts_instead_of_spinning) {
  Death d = die_in_child([] {
    fiberloop::EventLoop loop;
    loop.create_task([] {
      for (;;) {
        try {
          fiberloop::sleep(0.01);
        } catch (...) {  // swallows FiberUnwind, then waits again
        }
      }
    });
    loop.run_once();
    loop.close();
  });
  BOOST_TEST(d.signal != SIGALRM, "the child spun until the alarm");
  check_fiberloop_abort(d, "being unwound");
}

BOOST_AUTO_TEST_CASE(awaiting_after_swallowing_aborts_too) {
  Death d = die_in_child([] {
    fiberloop::EventLoop loop;
    auto fut = loop.create_future<int>();
    loop.create_task([fut] {
      for (;;) {
        try {
          fiberloop::await(fut);
        } catch (...) {
        }
      }
    });
    loop.run_once();
    loop.close();
  });
  BOOST_TEST(d.signal != SIGALRM, "the child spun until the alarm");
  check_fiberloop_abort(d, "being unwound");
}

BOOST_AUTO_TEST_CASE(waiting_in_a_destructor_during_close_aborts_with_our_message) {
  Death d = die_in_child([] {
    struct WaitsInDestructor {
      ~WaitsInDestructor() { fiberloop::sleep(0.01); }
    };
    fiberloop::EventLoop loop;
    loop.create_task([] {
      WaitsInDestructor w;
      fiberloop::sleep(3600);
    });
    loop.run_once();
    loop.close();
  });
  check_fiberloop_abort(d, "sleep() called while the fiber is being unwound");
}

BOOST_AUTO_TEST_CASE(a_generator_yielding_after_swallowing_aborts_with_our_message) {
  Death d = die_in_child([] {
    fiberloop::Generator<int> gen([](auto& g) {
      for (;;) {
        try {
          g.yield(1);
        } catch (...) {
        }
      }
    });
    gen.send();
    gen.close();
  });
  check_fiberloop_abort(d, "while it was being unwound");
}

BOOST_AUTO_TEST_CASE(rethrowing_fiber_unwind_is_fine) {
  int destroyed = 0;
  {
    fiberloop::EventLoop loop;
    loop.create_task([&destroyed] {
      struct Count {
        int& n;
        ~Count() { ++n; }
      } c{destroyed};
      try {
        fiberloop::sleep(3600);
      } catch (const fiberloop::FiberUnwind&) {
        throw;
      } catch (...) {
      }
    });
    loop.set_exception_handler([](fiberloop::EventLoop&, const fiberloop::ExceptionContext&) {});
    loop.run_once();
    loop.close();
  }
  BOOST_TEST(destroyed == 1);
}

BOOST_AUTO_TEST_SUITE_END()
