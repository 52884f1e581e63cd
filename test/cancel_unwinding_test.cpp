// A cancellation requested while a task unwinds is held until the unwinding
// is over: a destructor that waits (C++'s `finally: await x.aclose()`) is
// never made to throw CancelledError, which would end in std::terminate.
#include <boost/test/unit_test.hpp>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

namespace fl = fiberloop;

namespace {

// AsyncClose waits on `closing` in its destructor and records that it got
// to the end of it.
struct AsyncClose {
  fl::Future<void> closing;
  bool* closed;
  ~AsyncClose() {
    fl::await(closing);
    *closed = true;
  }
};

// wait_done(t) waits until t is done, whatever it ended with.
template <class T>
void wait_done(const fl::Task<T>& t) {
  fl::wait(std::vector{t});
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(cancel_unwinding, LoopFixture)

BOOST_AUTO_TEST_CASE(one_cancel_unwinds_through_a_waiting_destructor) {
  auto closing = loop.create_future<void>();
  bool closed = false;
  auto t = loop.create_task([&] {
    AsyncClose c{closing, &closed};
    fl::sleep(100);
  });
  run([&] {
    fl::sleep(0);
    t.cancel();
    fl::sleep(0.001);
    BOOST_TEST(!t.done());  // parked in the destructor
    closing.set_result();
    wait_done(t);
  });
  BOOST_TEST(t.cancelled());
  BOOST_TEST(closed);
}

BOOST_AUTO_TEST_CASE(a_second_cancel_during_a_waiting_destructor_is_held) {
  auto closing = loop.create_future<void>();
  bool closed = false;
  auto t = loop.create_task([&] {
    AsyncClose c{closing, &closed};
    fl::sleep(100);
  });
  run([&] {
    fl::sleep(0);
    t.cancel("first");
    fl::sleep(0.001);
    BOOST_TEST(t.cancel("second"));  // requested, not raised in the destructor
    BOOST_TEST(t.cancelling() == 2);
    BOOST_TEST(!closing.done());     // the awaited future is left alone
    fl::sleep(0.001);
    BOOST_TEST(!t.done());
    closing.set_result();
    wait_done(t);
  });
  BOOST_TEST(t.cancelled());
  BOOST_TEST(closed);
}

BOOST_AUTO_TEST_CASE(a_cancel_during_an_errors_waiting_destructor_leaves_the_error) {
  // asyncio: a task that raises while a cancel() is pending ends with its
  // exception.
  auto closing = loop.create_future<void>();
  bool closed = false;
  auto t = loop.create_task([&] {
    AsyncClose c{closing, &closed};
    throw std::runtime_error("the task's own error");
  });
  run([&] {
    fl::sleep(0);
    BOOST_TEST(t.cancel());
    fl::sleep(0.001);
    closing.set_result();
    wait_done(t);
  });
  BOOST_TEST(!t.cancelled());
  BOOST_TEST(what_of(t.exception()) == "the task's own error");
  BOOST_TEST(closed);
}

BOOST_AUTO_TEST_CASE(a_held_cancel_is_raised_at_the_first_wait_after_the_unwinding) {
  auto closing = loop.create_future<void>();
  bool closed = false;
  bool raised_after = false;
  auto t = loop.create_task([&] {
    try {
      AsyncClose c{closing, &closed};
      throw std::runtime_error("caught below");
    } catch (const std::runtime_error&) {
    }
    try {
      fl::sleep(100);
    } catch (const fl::CancelledError&) {
      raised_after = true;
      throw;
    }
  });
  run([&] {
    fl::sleep(0);
    t.cancel();
    fl::sleep(0.001);
    closing.set_result();
    wait_done(t);
  });
  BOOST_TEST(closed);
  BOOST_TEST(raised_after);
  BOOST_TEST(t.cancelled());
}

BOOST_AUTO_TEST_CASE(a_cancel_in_a_catch_block_is_raised_as_in_asyncio) {
  // Inside a handler nothing is in flight: the wait there is cancelled, and
  // CancelledError replaces the handled exception, as in asyncio.
  auto closing = loop.create_future<void>();
  auto t = loop.create_task([&] {
    try {
      throw std::runtime_error("handled");
    } catch (...) {
      fl::await(closing);
      throw;
    }
  });
  run([&] {
    fl::sleep(0);
    t.cancel();
    wait_done(t);
  });
  BOOST_TEST(t.cancelled());
  BOOST_TEST(closing.cancelled());
}

BOOST_AUTO_TEST_CASE(a_timeout_inside_a_waiting_destructor_still_expires) {
  // The scope's own expiry is raised at its own depth: cleanup can bound
  // its wait while the task unwinds.
  bool timed_out = false;
  auto t = loop.create_task([&] {
    struct BoundedClose {
      bool* timed_out;
      ~BoundedClose() {
        try {
          fl::with_timeout(0.005, [] { fl::sleep(100); });
        } catch (const fl::TimeoutError&) {
          *timed_out = true;
        }
      }
    } c{&timed_out};
    throw std::runtime_error("unwinding");
  });
  run([&] { wait_done(t); });
  BOOST_TEST(timed_out);
  BOOST_TEST(what_of(t.exception()) == "unwinding");
}

BOOST_AUTO_TEST_CASE(an_outer_timeout_expiring_in_a_waiting_destructor_is_held) {
  auto closing = loop.create_future<void>();
  bool closed = false;
  auto t = loop.create_task([&] {
    fl::with_timeout(0.002, [&] {
      AsyncClose c{closing, &closed};
      throw std::runtime_error("thrown inside the scope");
    });
  });
  loop.call_later(0.02, [&] { closing.set_result(); });
  run([&] { wait_done(t); });
  BOOST_TEST(closed);
  BOOST_TEST(what_of(t.exception()) == "thrown inside the scope");
  BOOST_TEST(t.cancelling() == 0);  // the scope took its held request back
}

BOOST_AUTO_TEST_SUITE_END()
