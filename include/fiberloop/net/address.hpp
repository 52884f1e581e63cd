// net/address.hpp: Address, a socket address (IPv4, IPv6 or unix) by value.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

#include "fiberloop/export.hpp"

namespace fiberloop::net {

// Address is a socket address by value: IPv4, IPv6 or a unix path.
//
// Example:
//   auto a = fiberloop::net::Address::ip("127.0.0.1", 8080);
//   ::connect(fd, a.data(), a.size());
//   a.to_string();  // "127.0.0.1:8080"
class FIBERLOOP_API Address {
 public:
  Address() noexcept = default;
  // Address(sa, len) copies a kernel address. Throws std::invalid_argument if
  // len is larger than a sockaddr_storage.
  Address(const sockaddr* sa, socklen_t len);

  // ip(numeric, port) parses a numeric IPv4 or IPv6 address (inet_pton; an
  // IPv6 one may carry a numeric scope, "fe80::1%2"). Throws
  // std::invalid_argument naming the text (a NUL byte in it included:
  // "127.0.0.1\0x" is not 127.0.0.1), or for a port outside 0-65535.
  static Address ip(const std::string& numeric, int port);
  // unix_path(path) is a unix socket address; a path starting with '\0' is in
  // the abstract namespace. Throws std::invalid_argument for an empty path,
  // one longer than sun_path holds, or a filesystem path with a NUL byte
  // (which the kernel would cut there).
  static Address unix_path(const std::string& path);

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return len_; }
  // family() is AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC for an empty address.
  int family() const noexcept { return len_ ? storage_.ss_family : AF_UNSPEC; }

  // host() is the numeric IP ("127.0.0.1", "::1", "fe80::1%2") or the unix
  // path; port() is the port, 0 for unix.
  std::string host() const;
  int port() const noexcept;
  // to_string() is "127.0.0.1:8080", "[::1]:8080", the unix path (an abstract
  // one as "@name"), "<unnamed unix socket>", or "<unknown>" for an empty or
  // unknown address.
  std::string to_string() const;

  // Equal addresses have the same length and bytes.
  friend FIBERLOOP_API bool operator==(const Address& a, const Address& b) noexcept;

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

namespace detail {
// printable(text) is text as error messages show it: control bytes as
// "\xNN", a NUL as "\x00" (a message is read as a C string).
FIBERLOOP_API std::string printable(std::string_view text);
}  // namespace detail

}  // namespace fiberloop::net
