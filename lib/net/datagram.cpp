#include "fiberloop/net/resolver.hpp"
#include "fiberloop/net/datagram.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <system_error>

namespace fiberloop::net {

std::size_t DatagramEndpoint::send(std::string_view data) {
  std::optional<Address> peer = peername();
  if (!peer) {
    throw std::system_error(EDESTADDRREQ, std::generic_category(),
                            "DatagramEndpoint::send: not connected to a remote");
  }
  return sock_sendto(sock_, data, *peer);
}

std::optional<Address> DatagramEndpoint::peername() const {
  if (!sock_ || sock_.peer().family() == AF_UNSPEC) return std::nullopt;
  return sock_.peer();
}

DatagramEndpoint open_datagram_endpoint(const std::string& local_host, int local_port,
                                        const std::string& remote_host, int remote_port) {
  std::optional<Address> remote;
  if (!remote_host.empty()) remote = detail::resolve(remote_host, remote_port).front();
  Address local;
  if (!local_host.empty() || !remote) {
    local = detail::resolve(local_host, local_port).front();
  } else {
    local = Address::ip(remote->family() == AF_INET6 ? "::" : "0.0.0.0", local_port);
  }
  Socket s(local.family(), SOCK_DGRAM);
  s.bind(local);
  if (remote) {
    if (::connect(s.fd(), remote->data(), remote->size()) != 0) {
      throw std::system_error(errno, std::generic_category(), "connect to " + remote->to_string());
    }
  }
  DatagramEndpoint ep(std::move(s));
  if (remote) ep.socket().set_peer(*remote);
  return ep;
}

}  // namespace fiberloop::net
