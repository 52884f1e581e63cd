// DatagramEndpoint (net/datagram.hpp) over loopback.
#include <arpa/inet.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"
#include "stall_guard.hpp"

namespace {

// unused_udp_port() is a loopback UDP port nobody is bound to right now.
int unused_udp_port() {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  auto a = net::Address::ip("127.0.0.1", 0);
  BOOST_REQUIRE(::bind(fd, a.data(), a.size()) == 0);
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  ::close(fd);
  return ntohs(sin.sin_port);
}

// send_from(port, to, data) sends one datagram from 127.0.0.1:port with a
// plain blocking socket (any thread); false if the port cannot be bound.
bool send_from(int port, const net::Address& to, const std::string& data) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  auto a = net::Address::ip("127.0.0.1", port);
  bool ok = ::bind(fd, a.data(), a.size()) == 0 &&
            ::sendto(fd, data.data(), data.size(), 0, to.data(), to.size()) ==
                static_cast<ssize_t>(data.size());
  ::close(fd);
  return ok;
}

bool refused(const std::system_error& e) {
  BOOST_TEST_MESSAGE("error: " << e.what());
  return e.code().value() == ECONNREFUSED;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(udp, LoopFixture)

BOOST_AUTO_TEST_CASE(datagrams_go_both_ways_with_their_senders) {
  run([] {
    auto a = net::open_datagram_endpoint("127.0.0.1", 0);
    auto b = net::open_datagram_endpoint("127.0.0.1", 0);
    BOOST_TEST(a.sockname().port() > 0);
    auto receiver = fiberloop::spawn([&] { return b.recvfrom(); });
    fiberloop::sleep(0.002);  // b waits first: the datagram wakes it
    a.sendto("ping", b.sockname());
    auto [data, from] = fiberloop::await(receiver);
    BOOST_TEST(data == "ping");
    BOOST_TEST(from == a.sockname());
    b.sendto("pong", from);
    auto [back, from_b] = a.recvfrom();
    BOOST_TEST(back == "pong");
    BOOST_TEST(from_b == b.sockname());
  });
}

BOOST_AUTO_TEST_CASE(a_thousand_ping_pongs_lose_nothing) {
  int rounds = run([] {
    auto server = net::open_datagram_endpoint("127.0.0.1", 0);
    auto client = net::open_datagram_endpoint("", 0, "127.0.0.1", server.sockname().port());
    BOOST_TEST(client.peername().value() == server.sockname());
    auto echo = fiberloop::spawn([&] {
      for (;;) {
        auto [d, from] = server.recvfrom();
        if (d == "stop") return;
        server.sendto(d, from);
      }
    });
    int ok = 0;
    for (int i = 0; i < 1000; ++i) {
      std::string msg = "datagram " + std::to_string(i);
      client.send(msg);
      ok += client.recvfrom().first == msg;
    }
    client.send("stop");
    fiberloop::await(echo);
    return ok;
  });
  BOOST_TEST(rounds == 1000);
}

BOOST_AUTO_TEST_CASE(a_long_datagram_is_truncated_to_the_buffer) {
  run([] {
    auto a = net::open_datagram_endpoint("127.0.0.1", 0);
    auto b = net::open_datagram_endpoint("127.0.0.1", 0);
    a.sendto("0123456789", b.sockname());
    BOOST_TEST(b.recvfrom(4).first == "0123");
    a.sendto("next", b.sockname());
    BOOST_TEST(b.recvfrom(100).first == "next");  // the rest of the first one is gone
  });
}

BOOST_AUTO_TEST_CASE(udp_errors_are_clear) {
  run([] {
    auto a = net::open_datagram_endpoint("127.0.0.1", 0);
    BOOST_CHECK_EXCEPTION(a.send("nowhere"), std::system_error, [](const std::system_error& e) {
      return e.code().value() == EDESTADDRREQ;
    });
    auto to = net::Address::ip("127.0.0.1", 9);
    BOOST_CHECK_EXCEPTION(a.sendto(std::string(70000, 'x'), to), std::system_error,
                          [](const std::system_error& e) {
                            return e.code().value() == EMSGSIZE &&
                                   std::string(e.what()).find("127.0.0.1:9") != std::string::npos;
                          });
    BOOST_CHECK_THROW(net::open_datagram_endpoint("127.0.0.1", 70000), std::invalid_argument);
    auto b = net::open_datagram_endpoint("127.0.0.1", 0);
    BOOST_CHECK_EXCEPTION(
        net::open_datagram_endpoint("127.0.0.1", b.sockname().port()), std::system_error,
        [](const std::system_error& e) { return e.code().value() == EADDRINUSE; });
    a.close();
    BOOST_TEST(a.is_closing());
    BOOST_CHECK_THROW(a.sendto("x", to), std::system_error);
    // b still works after the errors around it.
    b.sendto("self", b.sockname());
    BOOST_TEST(b.recvfrom().first == "self");
  });
}

BOOST_AUTO_TEST_CASE(udp_over_ipv6) {
  run([] {
    net::DatagramEndpoint a;
    try {
      a = net::open_datagram_endpoint("::1", 0);
    } catch (const std::system_error& e) {
      BOOST_TEST_MESSAGE("skipped: no IPv6 loopback: " << e.what());
      return;
    }
    auto b = net::open_datagram_endpoint("::1", 0);
    a.sendto("v6", b.sockname());
    auto [d, from] = b.recvfrom();
    BOOST_TEST(d == "v6");
    BOOST_TEST(from == a.sockname());
  });
}

BOOST_AUTO_TEST_CASE(a_refused_connected_endpoint_raises_econnrefused_and_stays_usable) {
  // The ICMP port-unreachable for a connected endpoint arrives as EPOLLERR
  // while a receiver waits. The receive reports it (asyncio: error_received,
  // ConnectionRefusedError); the error is transient, so the next receive
  // waits again — it must not spin on a fd marked hung up for good — and a
  // live peer is heard later.
  run(
      [&] {
        int dead = unused_udp_port();
        auto ep = net::open_datagram_endpoint("127.0.0.1", 0, "127.0.0.1", dead);
        const net::Address me = ep.sockname();
        // A spinning receive never suspends: only a datagram from the
        // connected peer ends it. The watchdog sends "stop", so a failure is
        // a failure, not a hang.
        StallGuard guard(loop, [dead, me] { send_from(dead, me, "stop"); });
        std::vector<std::string> got;
        int errors = 0;
        auto receiver = fiberloop::spawn([&] {
          for (;;) {
            try {
              auto [data, from] = ep.recvfrom();
              if (data == "stop") return;
              got.push_back(data);
            } catch (const std::system_error& e) {
              if (!refused(e)) throw;
              ++errors;
            }
          }
        });
        auto wait_until = [&](auto&& done) {
          double until = loop.time() + 2.0;
          while (!done() && loop.time() < until) fiberloop::sleep(0.001);
        };
        fiberloop::sleep(0.005);  // the receiver waits
        for (int round = 1; round <= 3; ++round) {
          ep.send("anyone there?");
          wait_until([&] { return errors >= round; });
          BOOST_TEST(errors == round);
          // The error was consumed: the receiver waits again, and this task
          // and the timers run meanwhile.
          double before = loop.time();
          fiberloop::sleep(0.02);
          BOOST_TEST(loop.time() - before < 0.5);
          BOOST_TEST(!receiver.done());
        }
        // A live peer on that port now: the endpoint hears it and answers.
        auto peer = net::open_datagram_endpoint("127.0.0.1", dead);
        peer.sendto("alive", me);
        wait_until([&] { return !got.empty(); });
        BOOST_TEST((got == std::vector<std::string>{"alive"}));
        ep.send("hello");
        BOOST_TEST(fiberloop::wait_for([&] { return peer.recvfrom(); }, 2.0).first == "hello");
        peer.sendto("stop", me);
        fiberloop::wait_for(receiver, 2.0);
        BOOST_TEST(guard.rescues() == 0);
        BOOST_TEST(guard.max_gap() <= 1.0);
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(an_error_reported_while_nobody_receives_reaches_the_next_receive) {
  // The EPOLLERR arrives while no task waits (the fd is registered, the loop
  // polls): the next receive, here sock_recv, raises it, and the one after
  // that waits for a datagram instead of spinning.
  run(
      [&] {
        int dead = unused_udp_port();
        auto ep = net::open_datagram_endpoint("127.0.0.1", 0, "127.0.0.1", dead);
        const net::Address me = ep.sockname();
        StallGuard guard(loop, [dead, me] { send_from(dead, me, "stop"); });
        // A receive that times out: the fd is now watched by the loop.
        BOOST_CHECK_THROW(fiberloop::wait_for([&] { return ep.recvfrom(); }, 0.01),
                          fiberloop::TimeoutError);
        ep.send("x");
        fiberloop::sleep(0.02);  // the loop polls: the error is recorded, nobody waits
        BOOST_CHECK_EXCEPTION(
            fiberloop::wait_for([&] { return net::sock_recv(ep.socket(), 64); }, 2.0),
            std::system_error, refused);
        auto receiver = fiberloop::spawn([&] { return net::sock_recv(ep.socket(), 64); });
        fiberloop::sleep(0.02);
        BOOST_TEST(!receiver.done());
        BOOST_TEST(send_from(dead, me, "late"));
        BOOST_TEST(fiberloop::wait_for(receiver, 2.0) == "late");
        BOOST_TEST(guard.rescues() == 0);
        BOOST_TEST(guard.max_gap() <= 1.0);
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(a_small_datagram_holds_only_its_bytes) {
  run([] {
    auto a = net::open_datagram_endpoint("127.0.0.1", 0);
    auto b = net::open_datagram_endpoint("127.0.0.1", 0);
    std::vector<std::string> kept;
    for (int i = 0; i < 100; ++i) {
      a.sendto(i % 2 ? "abc" : std::string(100, 'd'), b.sockname());
      kept.push_back(b.recvfrom().first);
    }
    BOOST_TEST(kept[1] == "abc");
    BOOST_TEST(kept[0] == std::string(100, 'd'));
    std::size_t worst = 0;
    for (const std::string& d : kept) worst = std::max(worst, d.capacity());
    BOOST_TEST(worst < 1024u);  // not the 64 KiB receive buffer
    // A datagram as long as the buffer still arrives whole.
    std::string big(65507, 'z');
    a.sendto(big, b.sockname());
    BOOST_TEST((b.recvfrom().first == big));
  });
}

BOOST_AUTO_TEST_SUITE_END()
