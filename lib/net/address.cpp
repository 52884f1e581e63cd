#include "fiberloop/net/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fiberloop::net {

Address::Address(const sockaddr* sa, socklen_t len) : len_(len) {
  if (len > sizeof storage_)
    throw std::invalid_argument("Address: a sockaddr of " + std::to_string(len) +
                                " bytes does not fit a sockaddr_storage");
  if (len) std::memcpy(&storage_, sa, len);
}

std::string detail::printable(std::string_view text) {
  std::string out;
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

Address Address::ip(const std::string& numeric, int port) {
  if (port < 0 || port > 65535)
    throw std::invalid_argument("port " + std::to_string(port) + " is outside 0-65535");
  // inet_pton reads a C string: "127.0.0.1\0garbage" would be 127.0.0.1.
  if (numeric.find('\0') != std::string::npos)
    throw std::invalid_argument("'" + detail::printable(numeric) +
                                "' is not a numeric IPv4 or IPv6 address: it contains a NUL byte");
  sockaddr_in sin{};
  if (::inet_pton(AF_INET, numeric.c_str(), &sin.sin_addr) == 1) {
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<std::uint16_t>(port));
    return Address(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
  }
  sockaddr_in6 sin6{};
  std::string h = numeric;
  std::string scope;
  if (auto pct = h.find('%'); pct != std::string::npos) {
    scope = h.substr(pct + 1);
    h.resize(pct);
  }
  if (::inet_pton(AF_INET6, h.c_str(), &sin6.sin6_addr) == 1) {
    if (!scope.empty()) {
      char* end = nullptr;
      unsigned long id = std::strtoul(scope.c_str(), &end, 10);
      if (*end != '\0' || id > 0xffffffffUL)
        throw std::invalid_argument("'" + numeric + "': the IPv6 scope is not a number");
      sin6.sin6_scope_id = static_cast<std::uint32_t>(id);
    }
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(static_cast<std::uint16_t>(port));
    return Address(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
  }
  throw std::invalid_argument("'" + numeric + "' is not a numeric IPv4 or IPv6 address");
}

Address Address::unix_path(const std::string& path) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  // A filesystem path needs its terminating NUL; an abstract name does not.
  bool abstract = !path.empty() && path[0] == '\0';
  if (path.empty() || path.size() + (abstract ? 0 : 1) > sizeof sun.sun_path)
    throw std::invalid_argument("unix socket path '" + detail::printable(path) +
                                "' is empty or longer than " +
                                std::to_string(sizeof sun.sun_path - 1) + " bytes");
  // The kernel (and stat, unlink) read a filesystem path up to its first
  // NUL: "/tmp/a\0b" would be /tmp/a. An abstract name is bytes, NULs included.
  if (!abstract && path.find('\0') != std::string::npos)
    throw std::invalid_argument("unix socket path '" + detail::printable(path) +
                                "' contains a NUL byte");
  std::memcpy(sun.sun_path, path.data(), path.size());
  auto len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return Address(reinterpret_cast<const sockaddr*>(&sun), len);
}

std::string Address::host() const {
  switch (family()) {
    case AF_INET: {
      char buf[INET_ADDRSTRLEN];
      auto* sin = reinterpret_cast<const sockaddr_in*>(&storage_);
      return ::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
    }
    case AF_INET6: {
      char buf[INET6_ADDRSTRLEN];
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
      std::string h = ::inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
      if (sin6->sin6_scope_id) h += "%" + std::to_string(sin6->sin6_scope_id);
      return h;
    }
    case AF_UNIX: {
      auto* sun = reinterpret_cast<const sockaddr_un*>(&storage_);
      std::size_t n = len_ - offsetof(sockaddr_un, sun_path);
      if (n == 0) return {};
      if (sun->sun_path[0] == '\0') return std::string(sun->sun_path, n);
      return std::string(sun->sun_path, ::strnlen(sun->sun_path, n));
    }
    default:
      return {};
  }
}

int Address::port() const noexcept {
  switch (family()) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
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
    default:
      return "<unknown>";
  }
}

bool operator==(const Address& a, const Address& b) noexcept {
  return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
}

}  // namespace fiberloop::net
