// net::getaddrinfo / resolve and net::Address. Loopback and numeric only:
// nothing here needs DNS. Numeric answers are checked against the C library's
// own getaddrinfo(AI_NUMERICHOST), byte for byte.
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::RuntimeError;
using fiberloop::net::Address;
using fiberloop::net::AddrInfo;
using fiberloop::net::GaiError;

namespace {

// libc(host, port, family, type) is the C library's answer, for comparison.
std::vector<AddrInfo> libc(const char* host, const char* port, int family, int type) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = type;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host, port, &hints, &res);
  BOOST_REQUIRE_MESSAGE(rc == 0, host << ": " << ::gai_strerror(rc));
  std::vector<AddrInfo> out;
  for (addrinfo* ai = res; ai; ai = ai->ai_next)
    out.push_back(
        {ai->ai_family, ai->ai_socktype, ai->ai_protocol, Address(ai->ai_addr, ai->ai_addrlen)});
  ::freeaddrinfo(res);
  return out;
}

std::vector<std::string> strings(const std::vector<Address>& v) {
  std::vector<std::string> out;
  for (const Address& a : v) out.push_back(a.to_string());
  return out;
}
std::vector<std::string> strings(const std::vector<AddrInfo>& v) {
  std::vector<std::string> out;
  for (const AddrInfo& a : v) out.push_back(a.address.to_string());
  return out;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(resolver, LoopFixture)

BOOST_AUTO_TEST_CASE(numeric_hosts_match_the_c_library_without_suspending_the_task) {
  struct Case {
    const char* host;
    int family;
  };
  const Case cases[] = {{"127.0.0.1", AF_UNSPEC}, {"127.0.0.1", AF_INET}, {"10.1.2.3", AF_UNSPEC},
                        {"::1", AF_UNSPEC},       {"::1", AF_INET6},      {"fe80::1:2", AF_UNSPEC}};
  const int types[] = {0, SOCK_STREAM, SOCK_DGRAM};
  bool sibling_ran = false;
  int checked = run([&] {
    fiberloop::spawn([&] { sibling_ran = true; });
    int n = 0;
    for (const Case& c : cases) {
      for (int type : types) {
        auto ours = fiberloop::net::getaddrinfo(c.host, "8080", c.family, type);
        auto theirs = libc(c.host, "8080", c.family, type);
        BOOST_TEST(strings(ours) == strings(theirs), c.host << " type " << type);
        BOOST_TEST((ours == theirs), c.host << " type " << type << ": bytes, type or protocol");
        ++n;
      }
    }
    // Had any call hopped to a thread, the task would have suspended and
    // the sibling would have run.
    bool ran = sibling_ran;
    fiberloop::sleep(0);
    return ran ? -1 : n;
  });
  BOOST_TEST(checked == 18);
  BOOST_TEST(sibling_ran);
}

BOOST_AUTO_TEST_CASE(localhost_is_the_loopback_without_a_thread_hop) {
  bool sibling_ran = false;
  auto got = run([&] {
    fiberloop::spawn([&] { sibling_ran = true; });
    std::vector<std::vector<std::string>> out;
    out.push_back(strings(fiberloop::net::resolve("localhost", 80)));
    out.push_back(strings(fiberloop::net::getaddrinfo("LocalHost", 81, AF_INET, SOCK_STREAM)));
    out.push_back(strings(fiberloop::net::getaddrinfo("localhost", 82, AF_INET6, SOCK_DGRAM)));
    if (sibling_ran) out.push_back({"suspended"});
    return out;
  });
  using V = std::vector<std::string>;
  BOOST_REQUIRE(got.size() == 3u);
  BOOST_TEST((got[0] == V{"127.0.0.1:80", "[::1]:80"}));
  BOOST_TEST((got[1] == V{"127.0.0.1:81"}));
  BOOST_TEST((got[2] == V{"[::1]:82"}));
  auto stream =
      run([] { return fiberloop::net::getaddrinfo("localhost", 80, AF_INET, SOCK_STREAM); });
  BOOST_REQUIRE(stream.size() == 1u);
  BOOST_TEST(stream[0].family == AF_INET);
  BOOST_TEST(stream[0].socktype == SOCK_STREAM);
  BOOST_TEST(stream[0].protocol == IPPROTO_TCP);
}

BOOST_AUTO_TEST_CASE(a_service_name_goes_through_the_executor) {
  bool sibling_ran = false;
  auto got = run([&] {
    fiberloop::spawn([&] { sibling_ran = true; });
    auto r = fiberloop::net::getaddrinfo("127.0.0.1", "http", AF_INET, SOCK_STREAM);
    return std::make_pair(strings(r), sibling_ran);
  });
  BOOST_TEST((got.first == std::vector<std::string>{"127.0.0.1:80"}));
  BOOST_TEST(got.second);  // it waited, and the loop ran the sibling meanwhile
}

BOOST_AUTO_TEST_CASE(errors_name_the_host_and_gai_strerror_and_the_loop_goes_on) {
  auto message = [&](const char* host, const char* port, int flags) {
    return run([=] {
      try {
        fiberloop::net::getaddrinfo(host, port, AF_UNSPEC, SOCK_STREAM, 0, flags);
        return std::string("no error");
      } catch (const GaiError& e) {
        return std::to_string(e.code) + " " + e.what();
      }
    });
  };
  BOOST_TEST(message("not-a-number", "80", AI_NUMERICHOST) ==
             std::to_string(EAI_NONAME) +
                 " getaddrinfo(\"not-a-number\", \"80\"): " + ::gai_strerror(EAI_NONAME));
  BOOST_TEST(message("127.0.0.1", "no-such-service-zz", 0) ==
             std::to_string(EAI_SERVICE) + " getaddrinfo(\"127.0.0.1\", \"no-such-service-zz\"): " +
                 ::gai_strerror(EAI_SERVICE));
  // A numeric host of the other family: the C library's own error.
  std::string other = run([] {
    try {
      fiberloop::net::getaddrinfo("::1", "80", AF_INET, SOCK_STREAM);
      return std::string("no error");
    } catch (const GaiError& e) {
      return std::string(e.what());
    }
  });
  BOOST_TEST(other.rfind("getaddrinfo(\"::1\", \"80\"): ", 0) == 0u, other);
  // After the errors, resolution and the loop work as before.
  BOOST_TEST(strings(run([] { return fiberloop::net::resolve("127.0.0.1", 1); }))[0] ==
             "127.0.0.1:1");
}

BOOST_AUTO_TEST_CASE(misuse_is_refused) {
  BOOST_CHECK_THROW(fiberloop::net::resolve("127.0.0.1", 80), RuntimeError);  // not in a task
  BOOST_TEST(run([] {
               try {
                 fiberloop::net::resolve("127.0.0.1", 70000);
                 return std::string("accepted");
               } catch (const std::invalid_argument& e) {
                 return std::string(e.what());
               }
             }) == "getaddrinfo(\"127.0.0.1\", \"70000\"): port 70000 is outside 0-65535");
  BOOST_TEST(run([] {
               try {
                 fiberloop::net::getaddrinfo("127.0.0.1", 80, AF_UNIX);
                 return std::string("accepted");
               } catch (const std::invalid_argument& e) {
                 return std::string(e.what());
               }
             }) ==
             "getaddrinfo(\"127.0.0.1\", \"80\"): unsupported address family 1 "
             "(AF_UNSPEC, AF_INET or AF_INET6)");
}

BOOST_AUTO_TEST_CASE(address_formats_and_parses) {
  BOOST_TEST(Address::ip("127.0.0.1", 8080).to_string() == "127.0.0.1:8080");
  BOOST_TEST(Address::ip("::1", 8080).to_string() == "[::1]:8080");
  BOOST_TEST(Address::ip("fe80::1%3", 1).to_string() == "[fe80::1%3]:1");
  BOOST_TEST(Address::unix_path("/tmp/sock").to_string() == "/tmp/sock");
  BOOST_TEST(Address::unix_path(std::string("\0name", 5)).to_string() == "@name");
  BOOST_TEST(Address().to_string() == "<unknown>");
  Address a = Address::ip("10.0.0.1", 53);
  BOOST_TEST(a.family() == AF_INET);
  BOOST_TEST(a.port() == 53);
  BOOST_TEST(a.host() == "10.0.0.1");
  BOOST_TEST(a.size() == sizeof(sockaddr_in));
  BOOST_TEST((a == Address::ip("10.0.0.1", 53)));
  BOOST_TEST(!(a == Address::ip("10.0.0.1", 54)));
  BOOST_TEST(Address::ip("::1", 1).size() == sizeof(sockaddr_in6));
  BOOST_CHECK_THROW(Address::ip("256.0.0.1", 1), std::invalid_argument);
  BOOST_CHECK_THROW(Address::ip("::1%eth0", 1), std::invalid_argument);
  BOOST_CHECK_THROW(Address::ip("127.0.0.1", 65536), std::invalid_argument);
  BOOST_CHECK_THROW(Address::unix_path(std::string(200, 'x')), std::invalid_argument);
  BOOST_CHECK_THROW(Address::unix_path(""), std::invalid_argument);
  sockaddr_storage big{};
  BOOST_CHECK_THROW(Address(reinterpret_cast<sockaddr*>(&big), sizeof big + 1),
                    std::invalid_argument);
}

// A NUL byte inside a host or port must not cut it short: C's string
// functions would see "localhost" in "localhost\0.evil.example" and
// 127.0.0.1 in "127.0.0.1\0garbage". Every entry point refuses it, naming
// the problem, before any lookup or connection.
BOOST_AUTO_TEST_CASE(a_nul_byte_in_a_host_or_port_is_refused_everywhere) {
  const std::string evil_name("localhost\0.evil.example", 23);
  const std::string evil_ip("127.0.0.1\0garbage", 17);
  const std::string evil_port = std::string("80") + '\0' + "81";
  // Something listens on the loopback, so a cut host would connect.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto lo = Address::ip("127.0.0.1", 0);
  BOOST_REQUIRE(::bind(fd, lo.data(), lo.size()) == 0);
  BOOST_REQUIRE(::listen(fd, 8) == 0);
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  const int port = ntohs(sin.sin_port);

  std::vector<std::string> outcomes = run([&] {
    std::vector<std::string> out;
    auto refused = [&](const char* what, auto&& call) {
      try {
        call();
        out.push_back(std::string(what) + ": accepted");
      } catch (const std::invalid_argument& e) {
        std::string m = e.what();
        BOOST_TEST_MESSAGE(what << ": " << m);
        bool names_it = m.find("NUL byte") != std::string::npos;
        out.push_back(std::string(what) +
                      (names_it ? ": refused" : ": refused without naming the NUL: " + m));
      } catch (const std::exception& e) {
        out.push_back(std::string(what) + ": " + e.what());
      }
    };
    namespace net = fiberloop::net;
    refused("getaddrinfo name", [&] { net::getaddrinfo(evil_name, "80"); });
    refused("getaddrinfo ip", [&] { net::getaddrinfo(evil_ip, port); });
    refused("getaddrinfo ipv6", [&] { net::getaddrinfo(std::string("::1\0x", 5), port); });
    refused("getaddrinfo port", [&] { net::getaddrinfo("127.0.0.1", evil_port); });
    refused("resolve", [&] { net::resolve(evil_name, port); });
    refused("detail::resolve", [&] { net::detail::resolve(evil_ip, port); });
    refused("Address::ip", [&] { Address::ip(evil_ip, port); });
    refused("Address::unix_path", [&] { Address::unix_path(std::string("/tmp/a\0b", 8)); });
    refused("open_connection", [&] { net::open_connection(evil_ip, port); });
    refused("open_connection name", [&] { net::open_connection(evil_name, port); });
    refused("start_server", [&] {
      net::start_server([](net::StreamReader, net::StreamWriter) {}, evil_ip, 0).close();
    });
    refused("start_unix_server", [&] {
      net::start_unix_server([](net::StreamReader, net::StreamWriter) {},
                             std::string("/tmp/fiberloop-nul\0x", 20))
          .close();
    });
    refused("open_datagram_endpoint local", [&] { net::open_datagram_endpoint(evil_ip, 0); });
    refused("open_datagram_endpoint remote",
            [&] { net::open_datagram_endpoint("", 0, evil_name, port); });
    // After the refusals, the same calls with clean strings work.
    auto [r, w] = net::open_connection("localhost", port);
    BOOST_TEST(w.get_extra_info("peername")->to_string() == "127.0.0.1:" + std::to_string(port));
    w.close();
    BOOST_TEST(strings(net::resolve("127.0.0.1", port)).size() == 1u);
    return out;
  });
  ::close(fd);
  for (const std::string& o : outcomes) BOOST_TEST(o.substr(o.find(": ")) == ": refused", o);
  // An abstract unix name may hold NUL bytes: they are part of the name.
  BOOST_TEST(Address::unix_path(std::string("\0a\0b", 4)).size() > 0u);
}

// A string port is a number in 0-65535 or a service name: "65536" is not
// port 0 (the C library's wrap-around), as the int overload refuses 65536.
BOOST_AUTO_TEST_CASE(a_string_port_outside_the_range_is_refused) {
  auto outcome = [&](const char* port) {
    return run([=] {
      try {
        auto r = fiberloop::net::getaddrinfo("127.0.0.1", port, AF_INET, SOCK_STREAM);
        return "accepted: " + r.front().address.to_string();
      } catch (const std::invalid_argument& e) {
        return std::string(e.what());
      } catch (const std::exception& e) {
        return std::string("other: ") + e.what();
      }
    });
  };
  BOOST_TEST(outcome("65536") ==
             "getaddrinfo(\"127.0.0.1\", \"65536\"): port 65536 is outside 0-65535");
  BOOST_TEST(outcome("4294967297") ==
             "getaddrinfo(\"127.0.0.1\", \"4294967297\"): port 4294967297 is outside 0-65535");
  BOOST_TEST(outcome("000065536") ==
             "getaddrinfo(\"127.0.0.1\", \"000065536\"): port 000065536 is outside 0-65535");
  BOOST_TEST(outcome("99999999999999999999999") ==
             "getaddrinfo(\"127.0.0.1\", \"99999999999999999999999\"): port "
             "99999999999999999999999 is outside 0-65535");
  // Signs and blanks that the C library would read as a number (-65535 is port 1 there).
  for (const char* odd : {"-1", "-65535", " 80", "+80"}) {
    std::string got = outcome(odd);
    BOOST_TEST(got.find("is not a port number") != std::string::npos, odd << ": " << got);
  }
  // What stays accepted: the range, leading zeros, service names, nothing.
  BOOST_TEST(outcome("65535") == "accepted: 127.0.0.1:65535");
  BOOST_TEST(outcome("0") == "accepted: 127.0.0.1:0");
  BOOST_TEST(outcome("000080") == "accepted: 127.0.0.1:80");
  BOOST_TEST(outcome("") == "accepted: 127.0.0.1:0");
  BOOST_TEST(outcome("http") == "accepted: 127.0.0.1:80");
}

BOOST_AUTO_TEST_SUITE_END()
