// net/address.hpp: Address, a socket address (IPv4, IPv6 or unix), and resolve().
#pragma once

#include <sys/socket.h>

#include <string>
#include <vector>

#include "fiberloop/export.hpp"

namespace fiberloop::net {

// Address is a socket address by value: IPv4, IPv6 or a unix path.
//
// Example:
//   auto a = fiberloop::net::Address::ip("127.0.0.1", 8080);
//   a.to_string();  // "127.0.0.1:8080"
class FIBERLOOP_API Address {
 public:
  Address() noexcept = default;
  // Address(sa, len) copies a kernel address. Throws std::invalid_argument if
  // len is larger than sockaddr_storage.
  Address(const sockaddr* sa, socklen_t len);

  // ip(numeric, port) parses a numeric IPv4 or IPv6 address (no names).
  // Throws std::invalid_argument naming the text, or a port outside 0-65535.
  static Address ip(const std::string& numeric, int port);
  // unix_path(path) is a unix-domain address. Throws std::invalid_argument
  // for a path longer than sun_path holds.
  static Address unix_path(const std::string& path);

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return len_; }
  // family() is AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC for an empty address.
  int family() const noexcept { return len_ ? storage_.ss_family : AF_UNSPEC; }
  // host() is the numeric IP, or the unix path; port() is 0 for unix.
  std::string host() const;
  int port() const noexcept;
  // to_string() is "1.2.3.4:80", "[::1]:80", the unix path, or "<unknown>".
  std::string to_string() const;

  friend FIBERLOOP_API bool operator==(const Address& a, const Address& b) noexcept;

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

namespace detail {
// resolve(host, port) is the one place where a host becomes addresses.
// Numeric IPv4 / IPv6 hosts and "localhost" (127.0.0.1) are understood
// directly; "" means every IPv4 interface (0.0.0.0), for servers. Other names
// throw std::invalid_argument naming the host (name resolution is not wired
// into this layer yet).
FIBERLOOP_API std::vector<Address> resolve(const std::string& host, int port);
}  // namespace detail

}  // namespace fiberloop::net
