// LoopGroup (a loop per thread) and the calls between its loops, submit()
// and run_on(). Every case runs in the TSan build as well.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <fiberloop/fiberloop.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "death.hpp"
#include "net_helpers.hpp"

namespace {

using fiberloop::LoopGroup;

// Parking keeps the loops other than 0 running until loop 0 releases them:
// each waits on its own Event, set from loop 0 through run_on().
struct Parking {
  explicit Parking(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) events.push_back(std::make_unique<fiberloop::Event>());
  }
  void wait(std::size_t index) { events[index]->wait(); }
  void release_all(LoopGroup& group) {
    for (std::size_t i = 1; i < events.size(); ++i)
      fiberloop::run_on(group.loop(i), [this, i] { events[i]->set(); });
  }
  std::vector<std::unique_ptr<fiberloop::Event>> events;
};

// on_loop_0_of_two(body) runs body(group) as loop 0's main task in a group
// of two, with loop 1 up (parked) until body returns: a target to call.
template <class Body>
void on_loop_0_of_two(Body body) {
  LoopGroup group(2);
  Parking parking(2);
  group.run([&](std::size_t index) {
    if (index == 1) return parking.wait(1);
    body(group);
    parking.release_all(group);
  });
}

// free_port() is a TCP port on 127.0.0.1 that nothing listens on now.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  BOOST_REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  BOOST_REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

void say(const char* text) {
  (void)!::write(STDERR_FILENO, text, std::char_traits<char>::length(text));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(loop_group)

BOOST_AUTO_TEST_CASE(each_main_runs_on_its_own_loop_and_thread_and_results_come_in_order) {
  LoopGroup group(3);
  BOOST_TEST(group.size() == 3u);
  std::vector<std::thread::id> ids(3);
  std::vector<int> own_loop(3, 0);
  auto results = group.run([&](std::size_t index) {
    ids[index] = std::this_thread::get_id();
    own_loop[index] = &fiberloop::get_running_loop() == &group.loop(index);
    fiberloop::sleep(0.001);
    return static_cast<int>(index) * 10;
  });
  BOOST_TEST(results == (std::vector<int>{0, 10, 20}), boost::test_tools::per_element());
  BOOST_TEST(own_loop == (std::vector<int>{1, 1, 1}), boost::test_tools::per_element());
  std::set<std::thread::id> distinct(ids.begin(), ids.end());
  BOOST_TEST(distinct.size() == 3u);
  BOOST_TEST(!distinct.count(std::this_thread::get_id()));
  // A group runs again once it has ended.
  auto again = group.run([](std::size_t index) { return index + 1; });
  BOOST_TEST(again.size() == 3u);
  BOOST_TEST(again[2] == 3u);
}

// Task numbers come from per-thread blocks (no shared counter on a spawn):
// still unique over every loop, and in order within one.
BOOST_AUTO_TEST_CASE(task_names_are_unique_across_loops_and_in_order_within_one) {
  constexpr int kTasks = 3000;  // a few blocks of 1,024 per loop
  LoopGroup group(2);
  auto names = group.run([&](std::size_t) {  // checked here: Boost.Test is one thread's
    std::vector<std::string> named;
    for (int i = 0; i < kTasks; ++i) {
      auto task = fiberloop::get_running_loop().create_task([] {});
      named.push_back(task.get_name());
      fiberloop::await(task);
    }
    return named;
  });
  std::set<unsigned long> all;
  for (const auto& named : names) {
    std::vector<unsigned long> seen;
    for (const auto& name : named) {
      BOOST_REQUIRE(name.rfind("Task-", 0) == 0);
      seen.push_back(std::stoul(name.substr(5)));
    }
    BOOST_TEST(std::is_sorted(seen.begin(), seen.end()));
    all.insert(seen.begin(), seen.end());
  }
  BOOST_TEST(all.size() == 2u * kTasks);
}

BOOST_AUTO_TEST_CASE(the_first_failure_cancels_the_other_mains_and_is_rethrown) {
  LoopGroup group(3);
  std::atomic<int> cancelled{0};
  try {
    group.run([&](std::size_t index) {
      if (index == 1) {
        fiberloop::sleep(0.01);
        throw std::domain_error("loop 1 failed");
      }
      try {
        fiberloop::sleep(60);
      } catch (const fiberloop::CancelledError&) {
        ++cancelled;
        throw;
      }
    });
    BOOST_FAIL("run() returned");
  } catch (const std::domain_error& e) {
    BOOST_TEST(std::string(e.what()) == "loop 1 failed");
  }
  BOOST_TEST(cancelled.load() == 2);
}

BOOST_AUTO_TEST_CASE(a_cancellation_the_group_did_not_ask_for_is_a_failure) {
  LoopGroup group(2);
  BOOST_CHECK_THROW(group.run([](std::size_t index) {
    if (index == 0) throw fiberloop::CancelledError();
    fiberloop::sleep(60);
  }),
                    fiberloop::CancelledError);
}

BOOST_AUTO_TEST_CASE(a_loop_whose_main_ended_refuses_calls_and_the_others_go_on) {
  LoopGroup group(2);
  std::string refused;
  group.run([&](std::size_t index) {
    if (index == 0) return;  // loop 0 closes at once, but lives until the group ends
    for (int i = 0; i < 1000; ++i) {
      try {
        fiberloop::run_on(group.loop(0), [] {});
        fiberloop::sleep(0.001);
      } catch (const fiberloop::RuntimeError& e) {
        refused = e.what();
        break;
      }
    }
  });
  BOOST_TEST(refused == "submit(): the target loop is closed");
}

BOOST_AUTO_TEST_CASE(sizes_and_misuse_are_refused_with_errors_that_name_them) {
  BOOST_CHECK_THROW(LoopGroup(0), std::invalid_argument);
  BOOST_CHECK_THROW(LoopGroup(LoopGroup::kMaxLoops + 1), std::invalid_argument);
  BOOST_TEST(LoopGroup::available_cores() >= 1u);
  BOOST_TEST(LoopGroup().size() == LoopGroup::available_cores());
  LoopGroup group(2);
  BOOST_CHECK_THROW(group.loop(0), fiberloop::RuntimeError);  // not running
  BOOST_CHECK_THROW(group.loop(2), std::out_of_range);
  // From inside a loop: run() would block that loop's thread.
  fiberloop::run([&] { BOOST_CHECK_THROW(group.run([](std::size_t) {}), fiberloop::RuntimeError); });
  // From one of its own mains: the same rule, reported as that main's failure.
  BOOST_CHECK_THROW(group.run([&](std::size_t) { group.run([](std::size_t) {}); }),
                    fiberloop::RuntimeError);
  // And the group still works afterwards.
  BOOST_TEST(group.run([](std::size_t i) { return i; }).size() == 2u);
}

BOOST_AUTO_TEST_CASE(pinned_threads_each_run_on_one_allowed_cpu) {
  cpu_set_t allowed;
  BOOST_REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  LoopGroup group(2, {.pin_threads = true});
  auto pinned = group.run([](std::size_t) {
    cpu_set_t mine;
    ::pthread_getaffinity_np(::pthread_self(), sizeof mine, &mine);
    int only = -1;
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &mine)) only = CPU_COUNT(&mine) == 1 ? c : -2;
    return only;
  });
  BOOST_TEST(pinned[0] == cpus[0]);
  BOOST_TEST(pinned[1] == cpus[1 % cpus.size()]);
  cpu_set_t after;
  BOOST_REQUIRE(::sched_getaffinity(0, sizeof after, &after) == 0);
  BOOST_TEST(CPU_EQUAL(&after, &allowed));  // the calling thread was left alone
}

BOOST_AUTO_TEST_CASE(ctrl_c_cancels_every_main_and_run_throws_keyboard_interrupt) {
  Death d = die_in_child([] {
    LoopGroup group(2);
    try {
      group.run([](std::size_t index) {
        struct Says {
          std::size_t index;
          ~Says() { say(index == 0 ? "main 0 unwound;" : "main 1 unwound;"); }
        } frame{index};
        if (index == 0) {
          fiberloop::sleep(0.01);
          ::kill(::getpid(), SIGINT);
        }
        fiberloop::sleep(60);
      });
      say("run returned;");
    } catch (const fiberloop::KeyboardInterrupt&) {
      say("KeyboardInterrupt;");
      ::_exit(fiberloop::KeyboardInterrupt::kExitStatus);
    }
  });
  BOOST_TEST(d.signal == 0, "died of signal " << d.signal << ": " << d.stderr_text);
  BOOST_TEST(d.exit_status == 130);
  BOOST_TEST(d.stderr_text.find("main 0 unwound;") != std::string::npos, d.stderr_text);
  BOOST_TEST(d.stderr_text.find("main 1 unwound;") != std::string::npos, d.stderr_text);
  BOOST_TEST(d.stderr_text.find("KeyboardInterrupt;") != std::string::npos, d.stderr_text);
}

BOOST_AUTO_TEST_CASE(a_thousand_connections_to_a_two_loop_group_are_all_served_by_both_loops) {
  constexpr int kClients = 1000;
  if (!enough_fds_for(kClients)) return;
  const int port = free_port();
  LoopGroup group(2);
  Parking parking(2);
  fiberloop::Event loop1_listens;  // loop 0's
  std::atomic<int> served[2] = {0, 0};
  int echoed = 0;
  group.run([&](std::size_t index) {
    auto handler = [&served, index](net::StreamReader r, net::StreamWriter w) {
      w.write(r.readline());
      w.drain();
      ++served[index];
      w.close();
    };
    auto server = net::start_server(handler, "127.0.0.1", port,
                                    {.backlog = kClients, .reuse_port = true});
    if (index == 1) {
      fiberloop::run_on(group.loop(0), [&] { loop1_listens.set(); });
      parking.wait(1);
    } else {
      loop1_listens.wait();
      std::vector<fiberloop::Task<int>> clients;
      for (int i = 0; i < kClients; ++i) {
        clients.push_back(fiberloop::spawn([port, i] {
          auto [r, w] = net::open_connection("127.0.0.1", port);
          std::string line = "line " + std::to_string(i) + "\n";
          w.write(line);
          int ok = r.readline() == line;
          w.close();
          return ok;
        }));
      }
      for (auto& c : clients) echoed += fiberloop::await(c);
      parking.release_all(group);
    }
    server.close();
    server.wait_closed();
  });
  BOOST_TEST(echoed == kClients);
  BOOST_TEST(served[0] + served[1] == kClients);
  // The kernel hashes each connection to one of the two listeners: an even
  // split within a wide margin (a split below 1:4 has odds under 1e-80).
  BOOST_TEST(served[0] > kClients / 5, "loop 0 served " << served[0]);
  BOOST_TEST(served[1] > kClients / 5, "loop 1 served " << served[1]);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(submit)

BOOST_AUTO_TEST_CASE(fn_runs_as_a_task_on_the_target_and_its_value_comes_back) {
  on_loop_0_of_two([&](LoopGroup& group) {
    auto caller_thread = std::this_thread::get_id();
    bool on_target = false;  // written by loop 1, read here after the result came back
    auto joined = fiberloop::submit(
        group.loop(1),
        [&](int n, std::string s) {
          on_target = &fiberloop::get_running_loop() == &group.loop(1) &&
                      fiberloop::current_task().has_value() &&
                      std::this_thread::get_id() != caller_thread;
          fiberloop::sleep(0.001);  // a task: it may wait
          return s + std::to_string(n);
        },
        7, std::string("seven="));
    BOOST_TEST(&joined.get_loop() == &group.loop(0));  // a future of the caller's loop
    BOOST_TEST(fiberloop::await(joined) == "seven=7");
    BOOST_TEST(on_target);
    // Move-only values travel as well.
    auto boxed = fiberloop::run_on(group.loop(1), [] { return std::make_unique<int>(42); });
    BOOST_TEST(*boxed == 42);
  });
}

BOOST_AUTO_TEST_CASE(the_exception_travels_back_as_itself) {
  on_loop_0_of_two([&](LoopGroup& group) {
    try {
      fiberloop::run_on(group.loop(1), [] { throw std::out_of_range("far away"); });
      BOOST_FAIL("no exception");
    } catch (const std::out_of_range& e) {
      BOOST_TEST(std::string(e.what()) == "far away");
    }
  });
}

BOOST_AUTO_TEST_CASE(cancelling_the_future_cancels_the_remote_task) {
  std::atomic<bool> remote_cancelled{false};
  std::atomic<bool> never_started_ran{false};
  on_loop_0_of_two([&](LoopGroup& group) {
    fiberloop::Event started;  // loop 0's
    auto remote = fiberloop::submit(group.loop(1), [&] {
      try {
        fiberloop::run_on(group.loop(0), [&] { started.set(); });
        fiberloop::sleep(60);
      } catch (const fiberloop::CancelledError&) {
        remote_cancelled = true;
        throw;
      }
    });
    started.wait();
    BOOST_TEST(remote.cancel());
    BOOST_CHECK_THROW(fiberloop::await(remote), fiberloop::CancelledError);
    // Each round trip lets loop 1 iterate: the cancellation lands in a few.
    for (int i = 0; i < 1000 && !remote_cancelled; ++i)
      fiberloop::run_on(group.loop(1), [] { fiberloop::sleep(0); });
    BOOST_TEST(remote_cancelled.load());
    // A cancellation made before loop 1 takes the call keeps fn from
    // running, even with the start queued there ahead of it: loop 1's
    // thread is held (blocked, not waiting on its loop) while the start and
    // the cancel are posted; it then takes both in one batch, in that order.
    std::promise<void> hold;
    std::atomic<bool> held{false};
    auto holder = fiberloop::submit(group.loop(1), [&, gate = hold.get_future()] {
      held = true;
      gate.wait_for(std::chrono::seconds(10));
    });
    for (int i = 0; i < 10000 && !held; ++i) fiberloop::sleep(0.001);
    BOOST_REQUIRE(held.load());
    auto early = fiberloop::submit(group.loop(1), [&] { never_started_ran = true; });
    early.cancel();
    fiberloop::sleep(0);  // the done-callback that forwards the cancellation runs
    fiberloop::sleep(0);
    hold.set_value();
    fiberloop::await(holder);
    fiberloop::run_on(group.loop(1), [] { fiberloop::sleep(0); });  // after both
    BOOST_TEST(!never_started_ran.load());
  });
}

BOOST_AUTO_TEST_CASE(a_task_cancelled_on_its_own_loop_cancels_the_caller_future) {
  on_loop_0_of_two([&](LoopGroup& group) {
    auto remote = fiberloop::submit(group.loop(1), [] {
      fiberloop::current_task()->cancel();
      fiberloop::sleep(0);
      return 1;
    });
    BOOST_CHECK_THROW(fiberloop::await(remote), fiberloop::CancelledError);
    BOOST_TEST(remote.cancelled());
    BOOST_TEST(!fiberloop::current_task()->cancelling());  // this task was not cancelled
  });
}

BOOST_AUTO_TEST_CASE(a_caller_loop_that_closes_first_lets_the_outcome_go) {
  LoopGroup group(2);
  std::atomic<bool> remote_finished{false};
  group.run([&](std::size_t index) {
    if (index == 0) {
      // Not awaited: loop 0 ends and closes while loop 1 still works on it.
      (void)fiberloop::submit(group.loop(1), [&] {
        fiberloop::sleep(0.02);
        remote_finished = true;
        return std::string(100, 'x');  // a value that must be freed, not leaked
      });
      return;
    }
    fiberloop::sleep(0.1);
  });
  BOOST_TEST(remote_finished.load());
}

BOOST_AUTO_TEST_CASE(submit_to_its_own_loop_is_a_task_and_misuse_is_refused) {
  fiberloop::run([] {
    auto& here = fiberloop::get_running_loop();
    BOOST_TEST(fiberloop::run_on(here, [](int x) { return x * 2; }, 21) == 42);
  });
  fiberloop::EventLoop closed;
  closed.close();
  // Outside any loop: there is no caller's loop to complete a future on.
  BOOST_CHECK_THROW(fiberloop::submit(closed, [] {}), fiberloop::RuntimeError);
  fiberloop::run([&] {
    try {
      fiberloop::submit(closed, [] {});
      BOOST_FAIL("submit to a closed loop returned");
    } catch (const fiberloop::RuntimeError& e) {
      BOOST_TEST(std::string(e.what()) == "submit(): the target loop is closed");
    }
  });
}

BOOST_AUTO_TEST_CASE(a_burst_of_calls_all_arrive_in_order) {
  constexpr int kCalls = 2000;
  std::vector<int> order;  // loop 1's
  on_loop_0_of_two([&](LoopGroup& group) {
    std::vector<fiberloop::Future<int>> calls;
    for (int i = 0; i < kCalls; ++i)
      calls.push_back(fiberloop::submit(group.loop(1), [&order, i] {
        order.push_back(i);
        return i;
      }));
    long sum = 0;
    for (auto& c : calls) sum += fiberloop::await(c);
    BOOST_TEST(sum == static_cast<long>(kCalls) * (kCalls - 1) / 2);
  });
  BOOST_REQUIRE(order.size() == static_cast<std::size_t>(kCalls));
  bool in_order = true;
  for (int i = 0; i < kCalls; ++i) in_order &= order[i] == i;
  BOOST_TEST(in_order);
}

BOOST_AUTO_TEST_SUITE_END()
