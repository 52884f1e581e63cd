#include "fiberloop/net/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>
#include <stdexcept>

namespace fiberloop::net {

Address::Address(const sockaddr* sa, socklen_t len) {
  if (len > sizeof storage_)
    throw std::invalid_argument("Address: a socket address of " + std::to_string(len) + " bytes");
  std::memcpy(&storage_, sa, len);
  len_ = len;
}

Address Address::ip(const std::string& numeric, int port) {
  if (port < 0 || port > 65535)
    throw std::invalid_argument("port " + std::to_string(port) + " is outside 0-65535");
  Address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  if (::inet_pton(AF_INET, numeric.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<std::uint16_t>(port));
    a.len_ = sizeof(sockaddr_in);
    return a;
  }
  a.storage_ = {};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  std::string text = numeric;
  if (text.size() > 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  if (::inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<std::uint16_t>(port));
    a.len_ = sizeof(sockaddr_in6);
    return a;
  }
  throw std::invalid_argument("'" + numeric + "' is not a numeric IPv4 or IPv6 address");
}

Address Address::unix_path(const std::string& path) {
  Address a;
  auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
  if (path.empty() || path.size() >= sizeof un->sun_path)
    throw std::invalid_argument("unix socket path '" + path + "' is empty or longer than " +
                                std::to_string(sizeof un->sun_path - 1) + " bytes");
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return a;
}

std::string Address::host() const {
  char buf[INET6_ADDRSTRLEN] = "";
  switch (family()) {
    case AF_INET:
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf,
                  sizeof buf);
      return buf;
    case AF_INET6:
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf,
                  sizeof buf);
      return buf;
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
      std::size_t max =
          len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
      return std::string(un->sun_path, ::strnlen(un->sun_path, max));
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
      std::string path = host();
      return path.empty() ? "<unnamed unix socket>" : path;
    }
    default:
      return "<unknown>";
  }
}

bool operator==(const Address& a, const Address& b) noexcept {
  return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
}

namespace detail {

std::vector<Address> resolve(const std::string& host, int port) {
  if (host.empty()) return {Address::ip("0.0.0.0", port)};
  if (host == "localhost") return {Address::ip("127.0.0.1", port)};
  try {
    return {Address::ip(host, port)};
  } catch (const std::invalid_argument&) {
    if (port < 0 || port > 65535) throw;
  }
  throw std::invalid_argument("cannot resolve host '" + host +
                              "': only numeric IPv4/IPv6 addresses and 'localhost' are "
                              "understood here");
}

}  // namespace detail
}  // namespace fiberloop::net
