// The cooperative budget: a task that keeps completing operations without
// waiting yields to the loop after EventLoop::task_budget() of them, so one
// busy peer (or a queue that always has an item) cannot freeze other tasks.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"

namespace fl = fiberloop;

namespace {

// SocketPair is a connected unix stream pair, each end a net::Socket.
struct SocketPair {
  net::Socket a, b;
};
SocketPair socket_pair() {
  int sv[2];
  BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  return {net::Socket::adopt(sv[0]), net::Socket::adopt(sv[1])};
}

// Interleaving counts the steps a sibling task makes while `busy` runs:
// each sleep(0) of the sibling is one step, so the count is how many times
// the busy task let the loop go.
template <class Busy>
int steps_of_a_sibling_during(Busy busy) {
  bool done = false;
  int steps = 0;
  auto sibling = fl::spawn([&] {
    while (!done) {
      fl::sleep(0);
      ++steps;
    }
  });
  fl::sleep(0);  // the sibling is parked in its first sleep(0)
  int before = steps;
  busy();
  int during = steps - before;
  done = true;
  fl::await(sibling);
  return during;
}

constexpr int kLines = 1000;

std::string lines(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "line " + std::to_string(i) + "\n";
  return s;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(coop_budget, LoopFixture)

BOOST_AUTO_TEST_CASE(the_default_budget_is_128) {
  BOOST_TEST(loop.task_budget() == 128u);
  loop.set_task_budget(7);
  BOOST_TEST(loop.task_budget() == 7u);
}

BOOST_AUTO_TEST_CASE(a_reader_of_buffered_lines_yields_every_budget) {
  auto [a, b] = socket_pair();
  std::string all = lines(kLines);
  BOOST_REQUIRE(::write(b.fd(), all.data(), all.size()) == static_cast<ssize_t>(all.size()));
  int during = run([&] {
    auto [reader, writer] = net::open_streams(std::move(a));
    return steps_of_a_sibling_during([&] {
      for (int i = 0; i < kLines; ++i) BOOST_REQUIRE(reader.readline() == "line " + std::to_string(i) + "\n");
    });
  });
  // Every readline counts, and a refill's recv counts too: at least one
  // yield per 128 lines, never one per line.
  BOOST_TEST(during >= kLines / 128);
  BOOST_TEST(during <= kLines / 32);
}

BOOST_AUTO_TEST_CASE(budget_zero_never_yields) {
  loop.set_task_budget(0);
  auto [a, b] = socket_pair();
  std::string all = lines(kLines);
  BOOST_REQUIRE(::write(b.fd(), all.data(), all.size()) == static_cast<ssize_t>(all.size()));
  int during = run([&] {
    auto [reader, writer] = net::open_streams(std::move(a));
    return steps_of_a_sibling_during([&] {
      for (int i = 0; i < kLines; ++i) reader.readline();
    });
  });
  BOOST_TEST(during == 0);
}

BOOST_AUTO_TEST_CASE(a_smaller_budget_yields_more_often) {
  loop.set_task_budget(10);
  int during = run([&] {
    fl::Queue<int> q;
    for (int i = 0; i < kLines; ++i) q.put_nowait(i);
    return steps_of_a_sibling_during([&] {
      for (int i = 0; i < kLines; ++i) BOOST_REQUIRE(q.get() == i);
    });
  });
  BOOST_TEST(during >= kLines / 10 - 1);
  BOOST_TEST(during <= kLines / 10 + 1);
}

BOOST_AUTO_TEST_CASE(queue_gets_and_puts_that_never_wait_yield) {
  int during = run([&] {
    fl::Queue<int> q;
    return steps_of_a_sibling_during([&] {
      for (int i = 0; i < kLines; ++i) {
        q.put(i);
        BOOST_REQUIRE(q.get() == i);
      }
    });
  });
  BOOST_TEST(during >= 2 * kLines / 128);
}

BOOST_AUTO_TEST_CASE(an_uncontended_lock_yields_every_budget) {
  int during = run([&] {
    fl::Lock lock;
    fl::Semaphore sem(1);
    return steps_of_a_sibling_during([&] {
      for (int i = 0; i < kLines; ++i) {
        std::lock_guard guard(lock);
        sem.acquire();
        sem.release();
      }
    });
  });
  BOOST_TEST(during >= 2 * kLines / 128);
}

BOOST_AUTO_TEST_CASE(socket_receives_that_never_wait_yield) {
  auto [a, b] = socket_pair();
  int during = run([&] {
    return steps_of_a_sibling_during([&] {
      for (int i = 0; i < kLines; ++i) {
        net::sock_sendall(b, "x");
        BOOST_REQUIRE(net::sock_recv(a, 16) == "x");
      }
    });
  });
  BOOST_TEST(during >= 2 * kLines / 128);
}

BOOST_AUTO_TEST_CASE(a_yield_is_a_cancellation_point_and_the_stream_stays_usable) {
  auto [a, b] = socket_pair();
  std::string all = lines(kLines);
  BOOST_REQUIRE(::write(b.fd(), all.data(), all.size()) == static_cast<ssize_t>(all.size()));
  run([&] {
    auto [reader, writer] = net::open_streams(std::move(a));
    int read = 0;
    auto busy = fl::spawn([&] {
      for (;;) {
        reader.readline();
        ++read;
      }
    });
    fl::sleep(0);  // busy reads until its budget is spent, then yields
    busy.cancel();
    fl::wait(std::vector{busy});
    BOOST_TEST(busy.cancelled());
    BOOST_TEST(read > 0);
    BOOST_TEST(read < kLines);
    // The next reader goes on from the next line: nothing lost or repeated.
    BOOST_TEST(reader.readline() == "line " + std::to_string(read) + "\n");
  });
}

BOOST_AUTO_TEST_CASE(a_flooding_peer_leaves_a_10ms_ticker_on_time) {
  // The measure: a peer that keeps a connection full, a reader that
  // never has to wait, and a ticker that must keep its period.
  net::Socket server = listener();
  int port = server.getsockname().port();
  std::atomic<bool> stop{false};
  std::thread flooder([&] {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<std::uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return;
    std::string burst = lines(2000);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!stop && std::chrono::steady_clock::now() < deadline) {
      if (::send(fd, burst.data(), burst.size(), MSG_NOSIGNAL) < 0) break;
    }
    ::close(fd);
  });
  double longest_gap = run([&] {
    auto conn = net::sock_accept(server).first;
    auto [reader, writer] = net::open_streams(std::move(conn));
    auto flood_reader = fl::spawn([&] {
      for (;;) reader.readline();
    });
    auto& l = fl::get_running_loop();
    double longest = 0, last = l.time();
    for (int tick = 0; tick < 40; ++tick) {
      fl::sleep(0.01);
      double now = l.time();
      longest = std::max(longest, now - last - 0.01);
      last = now;
    }
    stop = true;
    flood_reader.cancel();
    fl::wait(std::vector{flood_reader});
    return longest;
  });
  flooder.join();
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr double kBound = 0.1;  // instrumented code is several times slower
#else
  constexpr double kBound = 0.02;
#endif
  BOOST_TEST(longest_gap <= kBound, "the ticker waited " << longest_gap << " s past its period");
}

BOOST_AUTO_TEST_SUITE_END()
