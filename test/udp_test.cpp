// DatagramEndpoint (net/datagram.hpp) over loopback.
#include <cerrno>
#include <string>
#include <system_error>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"

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

BOOST_AUTO_TEST_SUITE_END()
