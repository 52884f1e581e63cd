#include "fiberloop/net/address.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>

namespace fiberloop::net {
namespace {

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// The protocol getaddrinfo pairs with a socket type.
int protocol_of(int type) {
  return type == SOCK_STREAM ? IPPROTO_TCP : type == SOCK_DGRAM ? IPPROTO_UDP : 0;
}

}  // namespace

Address::Address(const sockaddr* sa, socklen_t len, int type, int proto)
    : length(len), socktype(type), protocol(proto) {
  if (len > sizeof storage)
    throw std::invalid_argument("Address: a sockaddr of " + std::to_string(len) +
                                " bytes does not fit a sockaddr_storage");
  if (len) std::memcpy(&storage, sa, len);
}

Address Address::ipv4(std::string_view host, std::uint16_t port, int type) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  std::string h(host);
  if (::inet_pton(AF_INET, h.c_str(), &sin.sin_addr) != 1)
    throw std::invalid_argument("Address::ipv4(): not a numeric IPv4 host: " + quoted(host));
  return Address(reinterpret_cast<const sockaddr*>(&sin), sizeof sin, type, protocol_of(type));
}

Address Address::ipv6(std::string_view host, std::uint16_t port, int type) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  std::string h(host);
  std::string scope;
  if (auto pct = h.find('%'); pct != std::string::npos) {
    scope = h.substr(pct + 1);
    h.resize(pct);
  }
  if (::inet_pton(AF_INET6, h.c_str(), &sin6.sin6_addr) != 1)
    throw std::invalid_argument("Address::ipv6(): not a numeric IPv6 host: " + quoted(host));
  if (!scope.empty()) {
    char* end = nullptr;
    unsigned long id = std::strtoul(scope.c_str(), &end, 10);
    if (*end != '\0' || id > 0xffffffffUL)
      throw std::invalid_argument("Address::ipv6(): the scope of " + quoted(host) +
                                  " is not a number");
    sin6.sin6_scope_id = static_cast<std::uint32_t>(id);
  }
  return Address(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6, type, protocol_of(type));
}

Address Address::unix_path(std::string_view path, int type) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.empty()) throw std::invalid_argument("Address::unix_path(): empty path");
  // A filesystem path needs its terminating NUL; an abstract name does not.
  bool abstract = path[0] == '\0';
  if (path.size() + (abstract ? 0 : 1) > sizeof sun.sun_path)
    throw std::invalid_argument("Address::unix_path(): path longer than " +
                                std::to_string(sizeof sun.sun_path - 1) +
                                " bytes: " + quoted(path));
  std::memcpy(sun.sun_path, path.data(), path.size());
  auto len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return Address(reinterpret_cast<const sockaddr*>(&sun), len, type, 0);
}

std::string Address::host() const {
  switch (family()) {
    case AF_INET: {
      char buf[INET_ADDRSTRLEN];
      auto* sin = reinterpret_cast<const sockaddr_in*>(&storage);
      return ::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
    }
    case AF_INET6: {
      char buf[INET6_ADDRSTRLEN];
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage);
      std::string h = ::inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
      if (sin6->sin6_scope_id) h += "%" + std::to_string(sin6->sin6_scope_id);
      return h;
    }
    case AF_UNIX: {
      auto* sun = reinterpret_cast<const sockaddr_un*>(&storage);
      std::size_t n = length - offsetof(sockaddr_un, sun_path);
      if (n == 0) return {};
      if (sun->sun_path[0] == '\0') return std::string(sun->sun_path, n);
      return std::string(sun->sun_path, ::strnlen(sun->sun_path, n));
    }
    default:
      return {};
  }
}

std::uint16_t Address::port() const noexcept {
  switch (family()) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    default:
      return 0;
  }
}

std::string Address::to_string() const {
  switch (family()) {
    case AF_INET:
      return host() + ":" + std::to_string(port());
    case AF_INET6:
      return "[" + host() + "]:" + std::to_string(port());
    case AF_UNIX: {
      std::string h = host();
      if (h.empty()) return "<unnamed unix socket>";
      if (h[0] == '\0') h[0] = '@';
      return h;
    }
    case AF_UNSPEC:
      return "<empty address>";
    default:
      return "<address family " + std::to_string(family()) + ">";
  }
}

bool operator==(const Address& a, const Address& b) noexcept {
  return a.length == b.length && a.socktype == b.socktype && a.protocol == b.protocol &&
         std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

}  // namespace fiberloop::net
