// Virtual time (EventLoop::set_virtual_time, RunOptions::virtual_time): the
// clock jumps to the next deadline only while the loop is durably blocked.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <fiberloop/fiberloop.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"

namespace {

using fiberloop::EventLoop;
using fiberloop::RuntimeError;
using fiberloop::TimeoutError;

// A bound on loop time for the tests that wait an hour or more: jumps make
// it cost nothing, and a deadlock still ends at it.
constexpr double kLongLimit = 100'000.0;

// VirtualLoopFixture is LoopFixture with the loop on virtual time.
struct VirtualLoopFixture : LoopFixture {
  VirtualLoopFixture() { loop.set_virtual_time(true); }
};

// real_seconds(fn) is how long fn took on the monotonic clock.
template <class Fn>
double real_seconds(Fn&& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// stamp(what, at) is one event of an ordering test: "what@at".
std::string stamp(const std::string& what, double at) {
  std::ostringstream os;
  os << what << "@" << at;
  return os.str();
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(virtual_time, VirtualLoopFixture)

BOOST_AUTO_TEST_CASE(an_hour_of_sleep_jumps_to_exactly_3600) {
  BOOST_TEST(loop.virtual_time());
  BOOST_TEST(loop.time() == 0.0);
  double took = real_seconds([&] { run([] { fiberloop::sleep(3600.0); }, kLongLimit); });
  BOOST_TEST(loop.time() == 3600.0);
  // Without the jump the poll would sleep for the hour (and the suite's
  // timeout would end it long before).
  BOOST_TEST(took < 10.0);
}

BOOST_AUTO_TEST_CASE(call_later_and_call_at_fire_in_deadline_order_at_their_deadlines) {
  std::vector<std::string> got;
  auto record = [&](const char* what) { got.push_back(stamp(what, loop.time())); };
  loop.call_later(5.0, record, "later 5");
  loop.call_at(2.0, record, "at 2");
  loop.call_later(2.0, record, "later 2");  // same deadline: after "at 2", scheduled first
  loop.call_at(0.5, record, "at 0.5");
  loop.call_later(3600.0, [&] { loop.stop(); });
  loop.run_forever();
  std::vector<std::string> want{"at 0.5@0.5", "at 2@2", "later 2@2", "later 5@5"};
  BOOST_TEST(got == want);
  BOOST_TEST(loop.time() == 3600.0);
}

BOOST_AUTO_TEST_CASE(iteration_ns_is_the_virtual_clock_as_the_iteration_read_it) {
  std::int64_t seen = -1;
  loop.call_later(7.25, [&] {
    seen = loop.core().iteration_ns();
    loop.stop();
  });
  loop.run_forever();
  BOOST_TEST(seen == 7'250'000'000);
}

BOOST_AUTO_TEST_CASE(wait_for_with_an_hour_timeout_times_out_at_the_hour) {
  auto never = loop.create_future<int>();
  run(
      [&] {
        BOOST_CHECK_THROW(fiberloop::wait_for(never, 3600.0), TimeoutError);
        BOOST_TEST(loop.time() == 3600.0);
        auto later = loop.create_future<int>();
        loop.call_later(1800.0, [later] { later.set_result(7); });
        BOOST_TEST(fiberloop::wait_for(later, 3600.0) == 7);
        BOOST_TEST(loop.time() == 5400.0);
      },
      kLongLimit);
}

BOOST_AUTO_TEST_CASE(timeout_scopes_expire_at_their_virtual_deadline) {
  run(
      [&] {
        BOOST_CHECK_THROW(fiberloop::with_timeout(60.0, [] { fiberloop::sleep(3600.0); }),
                          TimeoutError);
        BOOST_TEST(loop.time() == 60.0);
        fiberloop::Timeout t = fiberloop::timeout(10.0);
        BOOST_TEST(*t.when() == 70.0);
        try {
          fiberloop::sleep(3600.0);
        } catch (...) {
          BOOST_CHECK_THROW(t.exit(std::current_exception()), TimeoutError);
        }
        BOOST_TEST(t.expired());
        BOOST_TEST(loop.time() == 70.0);
      },
      kLongLimit);
}

BOOST_AUTO_TEST_CASE(a_queue_get_with_a_timeout_waits_in_virtual_time) {
  fiberloop::Queue<int> q;
  run(
      [&] {
        BOOST_CHECK_THROW(fiberloop::wait_for([&] { return q.get(); }, 7200.0), TimeoutError);
        BOOST_TEST(loop.time() == 7200.0);
        auto producer = fiberloop::spawn([&] {
          fiberloop::sleep(100.0);
          q.put(5);
        });
        BOOST_TEST(fiberloop::wait_for([&] { return q.get(); }, 3600.0) == 5);
        BOOST_TEST(loop.time() == 7300.0);
        fiberloop::await(producer);
      },
      kLongLimit);
}

BOOST_AUTO_TEST_CASE(tasks_with_different_sleeps_interleave_in_one_exact_order) {
  std::vector<std::string> got;
  auto sleeper = [&](std::string name, double step, int times) {
    for (int i = 0; i < times; ++i) {
      fiberloop::sleep(step);
      got.push_back(stamp(name, loop.time()));
    }
  };
  run(
      [&] {
        auto a = fiberloop::spawn(sleeper, std::string("a"), 1.0, 3);
        auto b = fiberloop::spawn(sleeper, std::string("b"), 1.5, 3);
        auto c = fiberloop::spawn(sleeper, std::string("c"), 2.5, 2);
        fiberloop::gather(a, b, c);
      },
      kLongLimit);
  // At 3.0, b's timer (set at 1.5) was scheduled before a's (set at 2.0).
  std::vector<std::string> want{"a@1", "b@1.5", "a@2", "c@2.5", "b@3", "a@3", "b@4.5", "c@5"};
  BOOST_TEST(got == want);
}

BOOST_AUTO_TEST_CASE(time_does_not_jump_while_a_server_waits_on_a_client_in_flight) {
  int lines = 0;
  bool server_timed_out = false;
  auto handle = [&](fiberloop::net::StreamReader reader, fiberloop::net::StreamWriter writer) {
    try {
      while (!fiberloop::wait_for([&] { return reader.readline(); }, 10.0).empty()) ++lines;
    } catch (const TimeoutError&) {
      server_timed_out = true;
    }
    writer.close();
  };
  run([&] {
    auto server = net::start_server(handle, "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    auto [r, w] = net::open_connection("127.0.0.1", port);
    for (int i = 0; i < 5; ++i) {
      fiberloop::sleep(0.01);
      w.write("line\n");
      w.drain();
    }
    w.close();
    BOOST_TEST(r.read().empty());  // the server closed its side: it is done
    server.close();
  });
  BOOST_TEST(lines == 5);
  BOOST_TEST(!server_timed_out);
  // The clock moved with the client's sleeps, never to the server's 10 s.
  BOOST_TEST(loop.time() >= 0.05);
  BOOST_TEST(loop.time() < 10.0);
}

BOOST_AUTO_TEST_CASE(time_does_not_jump_while_a_task_waits_on_an_fd_another_thread_writes) {
  int fds[2];
  BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  // The writer is no task of the loop's: only the fd shows it may still
  // come, so a jump to the hour-long timeout would overtake it.
  std::thread writer([fd = fds[1]] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    BOOST_CHECK(::write(fd, "x", 1) == 1);
  });
  bool arrived = false;
  run([&] {
    fiberloop::wait_for([&] { fiberloop::wait_readable(fds[0]); }, 3600.0);
    arrived = true;
  });
  writer.join();
  loop.forget_fd(fds[0]);
  ::close(fds[0]);
  ::close(fds[1]);
  BOOST_TEST(arrived);
  BOOST_TEST(loop.time() < 3600.0);
}

BOOST_AUTO_TEST_CASE(an_fd_registered_but_not_awaited_does_not_hold_the_clock) {
  int fds[2];
  BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  BOOST_REQUIRE(::write(fds[1], "x", 1) == 1);
  double took = real_seconds([&] {
    run(
        [&] {
          fiberloop::wait_readable(fds[0]);  // registers fds[0], which stays registered
          fiberloop::sleep(3600.0);
        },
        kLongLimit);
  });
  BOOST_TEST(loop.forget_fd(fds[0]));  // it was still registered through the sleep
  ::close(fds[0]);
  ::close(fds[1]);
  // The readiness wait itself was a real one (the fd was awaited): the
  // clock moved by the microseconds it took, then jumped the hour.
  BOOST_TEST(loop.time() >= 3600.0);
  BOOST_TEST(loop.time() < 3601.0);
  BOOST_TEST(took < 10.0);
}

BOOST_AUTO_TEST_CASE(a_to_thread_job_in_flight_holds_the_clock) {
  std::vector<std::string> order;
  double job_at = -1;
  run(
      [&] {
        loop.call_later(3600.0, [&] { order.push_back("timer"); });
        int v = fiberloop::to_thread([] {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the job's work
          return 42;
        });
        BOOST_TEST(v == 42);
        order.push_back("job");
        job_at = loop.time();
        fiberloop::sleep(3600.0);
      },
      kLongLimit);
  BOOST_TEST(order == (std::vector<std::string>{"job", "timer"}));
  BOOST_TEST(job_at < 3600.0);
}

BOOST_AUTO_TEST_CASE(a_pending_call_soon_threadsafe_holds_the_clock) {
  double posted_at = -1;
  loop.call_later(3600.0, [&] { loop.stop(); });
  std::thread poster([&] { loop.call_soon_threadsafe([&] { posted_at = loop.time(); }); });
  poster.join();  // the post is pending before the loop's first iteration
  loop.run_forever();
  BOOST_TEST(posted_at == 0.0);
  BOOST_TEST(loop.time() == 3600.0);
}

BOOST_AUTO_TEST_CASE(a_signal_handler_of_the_program_holds_the_clock) {
  bool got_signal = false;
  double at = -1;
  loop.add_signal_handler(SIGUSR1, [&] {
    got_signal = true;
    at = loop.time();
    loop.stop();
  });
  loop.call_later(3600.0, [&] { loop.stop(); });
  std::thread sender([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ::kill(::getpid(), SIGUSR1);
  });
  loop.run_forever();
  sender.join();
  loop.remove_signal_handler(SIGUSR1);
  BOOST_TEST(got_signal);
  BOOST_TEST(at < 3600.0);
}

BOOST_AUTO_TEST_CASE(set_virtual_time_is_refused_once_the_loop_has_run) {
  auto refused = [](const RuntimeError& e) {
    return std::string(e.what()).find("before the loop first runs") != std::string::npos;
  };
  run([&] { BOOST_CHECK_EXCEPTION(loop.set_virtual_time(false), RuntimeError, refused); });
  BOOST_CHECK_EXCEPTION(loop.set_virtual_time(false), RuntimeError, refused);
  BOOST_TEST(loop.virtual_time());
}

BOOST_AUTO_TEST_CASE(set_virtual_time_is_refused_with_a_timer_scheduled) {
  EventLoop fresh;
  fresh.call_later(1.0, [] {});
  BOOST_CHECK_EXCEPTION(fresh.set_virtual_time(true), RuntimeError, [](const RuntimeError& e) {
    return std::string(e.what()).find("before any timer is scheduled") != std::string::npos;
  });
  BOOST_TEST(!fresh.virtual_time());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(run_options)

BOOST_AUTO_TEST_CASE(run_with_virtual_time_sleeps_an_hour_at_once) {
  // SIGINT at its default, so that run() installs its Ctrl-C handler: that
  // one must not hold the clock.
  struct sigaction dfl = {};
  struct sigaction saved = {};
  dfl.sa_handler = SIG_DFL;
  BOOST_REQUIRE(::sigaction(SIGINT, &dfl, &saved) == 0);
  double at = -1;
  bool ctrl_c_installed = false;
  double took = real_seconds([&] {
    at = fiberloop::run(fiberloop::RunOptions{.virtual_time = true}, [&] {
      EventLoop& loop = fiberloop::get_running_loop();
      BOOST_TEST(loop.virtual_time());
      BOOST_TEST(!loop.get_debug());
      struct sigaction now = {};
      ::sigaction(SIGINT, nullptr, &now);
      ctrl_c_installed = now.sa_handler != SIG_DFL;
      fiberloop::sleep(3600.0);
      return loop.time();
    });
  });
  ::sigaction(SIGINT, &saved, nullptr);
  BOOST_TEST(ctrl_c_installed);
  BOOST_TEST(at == 3600.0);
  BOOST_TEST(took < 10.0);
}

BOOST_AUTO_TEST_CASE(run_takes_its_options_as_an_lvalue_and_passes_arguments_on) {
  const fiberloop::RunOptions options{.virtual_time = true, .debug = true};
  int got = fiberloop::run(
      options,
      [](int x) {
        EventLoop& loop = fiberloop::get_running_loop();
        BOOST_TEST(loop.get_debug());
        fiberloop::sleep(60.0);
        return x + static_cast<int>(loop.time());
      },
      1);
  BOOST_TEST(got == 61);
  // A braced list can only be the options: the plain run() cannot deduce from it.
  double at = fiberloop::run({.virtual_time = true}, [] {
    fiberloop::sleep(5.0);
    return fiberloop::get_running_loop().time();
  });
  BOOST_TEST(at == 5.0);
  // Without options, run() stays on the real clock.
  BOOST_TEST(!fiberloop::run([] { return fiberloop::get_running_loop().virtual_time(); }));
}

BOOST_AUTO_TEST_SUITE_END()
