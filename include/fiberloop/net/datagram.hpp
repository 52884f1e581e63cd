// net/datagram.hpp: DatagramEndpoint, a UDP socket used in blocking style.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "fiberloop/export.hpp"
#include "fiberloop/net/address.hpp"
#include "fiberloop/net/socket.hpp"

namespace fiberloop::net {

// DatagramEndpoint is a bound (and optionally connected) UDP socket: the
// blocking-style counterpart of asyncio's create_datagram_endpoint.
//
// Example (inside a task):
//   auto ep = fiberloop::net::open_datagram_endpoint("127.0.0.1", 0);
//   ep.sendto("ping", peer);
//   auto [data, from] = ep.recvfrom();
class FIBERLOOP_API DatagramEndpoint {
 public:
  DatagramEndpoint() = default;
  explicit DatagramEndpoint(Socket s) : sock_(std::move(s)) {}

  // sendto(data, to) sends one datagram; send(data) to the connected remote.
  // Throws std::system_error naming the destination (EMSGSIZE...).
  std::size_t sendto(std::string_view data, const Address& to) {
    return sock_sendto(sock_, data, to);
  }
  std::size_t send(std::string_view data);
  // recvfrom(max) waits for one datagram (truncated to max) and its sender;
  // the string holds the datagram's bytes only (its capacity fits them).
  // On a connected endpoint whose remote's port is closed, the ICMP
  // port-unreachable is reported by the next receive (or send) as
  // std::system_error ECONNREFUSED (asyncio: error_received), once; the
  // endpoint stays usable and the receive after that waits as before.
  std::pair<std::string, Address> recvfrom(std::size_t max = 65536) {
    return sock_recvfrom(sock_, max);
  }
  // sockname() is the bound address; peername() the connected remote, if any.
  Address sockname() const { return sock_.getsockname(); }
  std::optional<Address> peername() const;
  void close() noexcept { sock_.close(); }
  bool is_closing() const noexcept { return !sock_; }
  Socket& socket() noexcept { return sock_; }

 private:
  Socket sock_;
};

// open_datagram_endpoint(local_host, local_port, remote_host, remote_port)
// binds a UDP socket (port 0 picks one) and, given a remote, connects it.
// An empty local_host with a remote binds to the remote's family's wildcard.
// Throws std::system_error naming the address, std::invalid_argument for a
// host it cannot resolve, a host or port with a NUL byte, a port outside 0-65535.
FIBERLOOP_API DatagramEndpoint open_datagram_endpoint(const std::string& local_host, int local_port,
                                                      const std::string& remote_host = {},
                                                      int remote_port = 0);

}  // namespace fiberloop::net
