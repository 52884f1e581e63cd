// net/resolver.hpp: getaddrinfo off the loop's thread, numeric hosts without a hop.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fiberloop/errors.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/net/address.hpp"

namespace fiberloop::net {

// GaiError is a failed name resolution; what() names the host, the port and
// gai_strerror's text. `code` is getaddrinfo's EAI_* value.
class FIBERLOOP_API GaiError : public Error {
 public:
  GaiError(int code, const std::string& message) : Error(message), code(code) {}
  int code;
};

// AddrInfo is one getaddrinfo answer, as asyncio's (family, type, proto,
// canonname, sockaddr) tuple without the canonical name.
struct AddrInfo {
  int family = AF_UNSPEC;  // AF_INET or AF_INET6
  int socktype = 0;        // SOCK_STREAM, SOCK_DGRAM, SOCK_RAW
  int protocol = 0;        // IPPROTO_TCP, IPPROTO_UDP, 0
  Address address;
  friend bool operator==(const AddrInfo&, const AddrInfo&) = default;
};

// getaddrinfo(host, port, family, type, protocol, flags), inside a task, is
// getaddrinfo(3) run on the loop's default executor, so the loop keeps running
// while it waits: one AddrInfo per answer, in getaddrinfo's order. family is
// AF_UNSPEC, AF_INET or AF_INET6; type 0 means every socket type.
//
// Without a thread hop (and so without suspending the task): a numeric host
// (inet_pton: "127.0.0.1", "::1") with a numeric port, unless flags ask for
// more than AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV — the answers are the
// C library's, byte for byte; and "localhost", which gives 127.0.0.1 then ::1
// (the loopback, RFC 6761, whatever /etc/hosts says) for the families asked.
// An empty host is getaddrinfo's null node (the wildcard with AI_PASSIVE,
// else the loopback).
//
// A string port is a number in 0-65535 (leading zeros allowed) or a service
// name ("http"); a NUL byte in host or port is refused before anything else
// reads them as C strings ("localhost\0.evil.example" is not localhost).
//
// Throws GaiError ("getaddrinfo(\"no.such.host\", \"80\"): Name or service
// not known"), std::invalid_argument for a family other than the three, a
// NUL byte in host or port, a port outside 0-65535 ("65536", which the C
// library would take as port 0) or one that starts like a number and is
// not one ("-1", " 80"); RuntimeError outside a task; CancelledError if the
// task is cancelled while waiting (the lookup itself runs to its end on its
// thread).
FIBERLOOP_API std::vector<AddrInfo> getaddrinfo(std::string_view host, std::string_view port,
                                                int family = AF_UNSPEC, int type = 0,
                                                int protocol = 0, int flags = 0);
FIBERLOOP_API std::vector<AddrInfo> getaddrinfo(std::string_view host, int port,
                                                int family = AF_UNSPEC, int type = 0,
                                                int protocol = 0, int flags = 0);

// resolve(host, port), inside a task, is the addresses of
// getaddrinfo(host, port, AF_UNSPEC, SOCK_STREAM): what to try, in order, to
// connect a TCP socket. Never empty (GaiError instead); std::invalid_argument
// for a port outside 0-65535.
FIBERLOOP_API std::vector<Address> resolve(std::string_view host, int port);

namespace detail {
// resolve(host, port) is the one place where the streams, servers and
// datagram endpoints turn a host into addresses: "" is every IPv4 interface
// (0.0.0.0, for servers), anything else is net::resolve (numeric hosts and
// "localhost" without a thread hop, names through getaddrinfo off the loop).
FIBERLOOP_API std::vector<Address> resolve(const std::string& host, int port);
}  // namespace detail

}  // namespace fiberloop::net
