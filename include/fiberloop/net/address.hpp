// net/address.hpp: Address, a socket address of any family with how to use it.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "fiberloop/export.hpp"

namespace fiberloop::net {

// Address is a socket address (IPv4, IPv6 or unix) as getaddrinfo gives it:
// the sockaddr bytes plus the socket type and protocol to use with it.
//
// Example:
//   auto a = fiberloop::net::Address::ipv4("127.0.0.1", 8080);
//   ::connect(fd, a.data(), a.size());
//   a.to_string();  // "127.0.0.1:8080"
struct FIBERLOOP_API Address {
  sockaddr_storage storage{};
  socklen_t length = 0;  // 0: empty
  int socktype = 0;      // SOCK_STREAM, SOCK_DGRAM, ... (0: unspecified)
  int protocol = 0;      // IPPROTO_TCP, IPPROTO_UDP, ... (0: the default)

  // Address(sa, len, socktype, protocol) copies len bytes of sa. Throws
  // std::invalid_argument if len is larger than a sockaddr_storage.
  Address() noexcept = default;
  Address(const sockaddr* sa, socklen_t len, int socktype = 0, int protocol = 0);

  // ipv4(host, port) / ipv6(host, port) parse a numeric host (inet_pton; an
  // IPv6 host may carry a numeric scope, "fe80::1%2"). unix_path(path) is a
  // unix socket address; a path starting with '\0' is in the abstract
  // namespace. Each throws std::invalid_argument naming what is wrong.
  static Address ipv4(std::string_view host, std::uint16_t port, int socktype = SOCK_STREAM);
  static Address ipv6(std::string_view host, std::uint16_t port, int socktype = SOCK_STREAM);
  static Address unix_path(std::string_view path, int socktype = SOCK_STREAM);

  int family() const noexcept { return length ? storage.ss_family : AF_UNSPEC; }
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
  socklen_t size() const noexcept { return length; }
  bool empty() const noexcept { return length == 0; }

  // host() is the numeric host ("127.0.0.1", "::1", a unix path); port() is
  // the port (0 for unix).
  std::string host() const;
  std::uint16_t port() const noexcept;
  // to_string() is "127.0.0.1:8080", "[::1]:8080", the unix path (an
  // abstract one as "@name"), "<unnamed unix socket>" or "<empty address>".
  std::string to_string() const;

  // Equal addresses have the same family, bytes, socket type and protocol.
  friend FIBERLOOP_API bool operator==(const Address& a, const Address& b) noexcept;
};

}  // namespace fiberloop::net
