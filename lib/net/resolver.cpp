#include "fiberloop/net/resolver.hpp"

#include <cctype>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>

#include "fiberloop/executor.hpp"

namespace fiberloop::net {
namespace {

constexpr int kShortCircuitFlags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;

std::string describe_call(std::string_view host, std::string_view port) {
  return "getaddrinfo(\"" + detail::printable(host) + "\", \"" + detail::printable(port) + "\")";
}

// check_text(host, port) refuses a NUL byte in either: the C library reads
// both as C strings, so "localhost\0.evil.example" would be localhost and
// "127.0.0.1\0garbage" 127.0.0.1.
void check_text(std::string_view host, std::string_view port) {
  const char* which = host.find('\0') != std::string_view::npos   ? "host"
                      : port.find('\0') != std::string_view::npos ? "port"
                                                                  : nullptr;
  if (which)
    throw std::invalid_argument(describe_call(host, port) + ": the " + which +
                                " contains a NUL byte");
}

// check_port(host, port) refuses a string port that is neither a number in
// 0-65535 nor a service name. The C library reads a port that starts like
// a number with strtoul and keeps 16 bits: "65536" would be port 0 and
// "4294967297" port 1 (the int overload refuses 65536).
void check_port(std::string_view host, std::string_view port) {
  if (port.empty()) return;
  auto c = static_cast<unsigned char>(port[0]);
  if (!std::isdigit(c) && c != '+' && c != '-' && !std::isspace(c)) return;  // a service name
  unsigned long value = 0;
  for (char d : port) {
    if (d < '0' || d > '9') {
      value = ~0ul;
      break;
    }
    if (value <= 65535) value = value * 10 + static_cast<unsigned>(d - '0');
  }
  if (value == ~0ul)
    throw std::invalid_argument(describe_call(host, port) + ": port '" + detail::printable(port) +
                                "' is not a port number (0-65535) or a service name");
  if (value > 65535)
    throw std::invalid_argument(describe_call(host, port) + ": port " + std::string(port) +
                                " is outside 0-65535");
}

// numeric_port("8080") is 8080; nullopt unless it is digits up to 65535.
// An empty port is getaddrinfo's null service: port 0.
std::optional<std::uint16_t> numeric_port(std::string_view port) {
  if (port.empty()) return 0;
  if (port.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

struct SocketKind {
  int type;
  int protocol;
};

// socket_kinds(type, protocol) is what getaddrinfo lists per address, in its
// order; nullopt for a combination left to getaddrinfo itself.
std::optional<std::vector<SocketKind>> socket_kinds(int type, int protocol) {
  static const SocketKind all[] = {
      {SOCK_STREAM, IPPROTO_TCP}, {SOCK_DGRAM, IPPROTO_UDP}, {SOCK_RAW, 0}};
  if (type == 0) {
    if (protocol != 0) return std::nullopt;
    return std::vector<SocketKind>(std::begin(all), std::end(all));
  }
  for (const SocketKind& k : all) {
    if (k.type == type && (protocol == 0 || protocol == k.protocol) && type != SOCK_RAW)
      return std::vector<SocketKind>{k};
  }
  return std::nullopt;
}

// short_circuit() answers what needs no lookup: numeric hosts and
// "localhost"; nullopt sends the query to getaddrinfo on a thread.
std::optional<std::vector<AddrInfo>> short_circuit(std::string_view host, std::string_view port,
                                                   int family, int type, int protocol, int flags) {
  if (host.empty() || (flags & ~kShortCircuitFlags) != 0) return std::nullopt;
  std::optional<std::uint16_t> p = numeric_port(port);
  if (!p) return std::nullopt;
  std::optional<std::vector<SocketKind>> kinds = socket_kinds(type, protocol);
  if (!kinds) return std::nullopt;

  std::vector<std::string> v4, v6;
  std::string h(host);
  in6_addr scratch;
  if (::inet_pton(AF_INET, h.c_str(), &scratch) == 1) {
    v4.push_back(h);
  } else if (::inet_pton(AF_INET6, h.c_str(), &scratch) == 1) {
    v6.push_back(h);
  } else if (::strcasecmp(h.c_str(), "localhost") == 0 && !(flags & AI_NUMERICHOST)) {
    v4.push_back("127.0.0.1");
    v6.push_back("::1");
  } else {
    return std::nullopt;
  }
  if (family == AF_INET) v6.clear();
  if (family == AF_INET6) v4.clear();
  // A numeric host of the other family is getaddrinfo's error to report.
  if (v4.empty() && v6.empty()) return std::nullopt;

  std::vector<AddrInfo> out;
  for (const auto* list : {&v4, &v6}) {
    for (const std::string& a : *list) {
      Address addr = Address::ip(a, *p);
      for (const SocketKind& k : *kinds) out.push_back({addr.family(), k.type, k.protocol, addr});
    }
  }
  return out;
}

// check_host_name() refuses, before any lookup, a host that no name server
// could know: a clear error for a typo, and no query sent for it.
void check_host_name(std::string_view host, std::string_view port) {
  bool ok = !host.empty() && host.size() <= 253;
  std::size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      ok = ok && label > 0;
      label = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
      ok = ok && ++label <= 63;
    } else {
      ok = false;
    }
  }
  if (!ok)
    throw std::invalid_argument(describe_call(host, port) + ": '" + std::string(host) +
                                "' is not a valid host name");
}

// blocking_getaddrinfo() is the lookup itself, run on an executor thread.
std::vector<AddrInfo> blocking_getaddrinfo(const std::string& host, const std::string& port,
                                           int family, int type, int protocol, int flags) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = type;
  hints.ai_protocol = protocol;
  hints.ai_flags = flags;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                         port.empty() ? nullptr : port.c_str(), &hints, &res);
  if (rc != 0) {
    std::string text = ::gai_strerror(rc);
    if (rc == EAI_SYSTEM) text += std::string(": ") + std::strerror(errno);
    throw GaiError(rc, describe_call(host, port) + ": " + text);
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owner(res, ::freeaddrinfo);
  std::vector<AddrInfo> out;
  for (addrinfo* ai = res; ai; ai = ai->ai_next)
    out.push_back(
        {ai->ai_family, ai->ai_socktype, ai->ai_protocol, Address(ai->ai_addr, ai->ai_addrlen)});
  return out;
}

}  // namespace

std::vector<AddrInfo> getaddrinfo(std::string_view host, std::string_view port, int family,
                                  int type, int protocol, int flags) {
  fiberloop::detail::require_task("getaddrinfo()");
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
    throw std::invalid_argument(describe_call(host, port) + ": unsupported address family " +
                                std::to_string(family) + " (AF_UNSPEC, AF_INET or AF_INET6)");
  check_text(host, port);
  check_port(host, port);
  if (auto quick = short_circuit(host, port, family, type, protocol, flags)) return *quick;
  // An IPv6 literal (a ':' in it) never reaches a name server either.
  if (!host.empty() && !(flags & AI_NUMERICHOST) && host.find(':') == std::string_view::npos)
    check_host_name(host, port);
  return to_thread(blocking_getaddrinfo, std::string(host), std::string(port), family, type,
                   protocol, flags);
}

std::vector<AddrInfo> getaddrinfo(std::string_view host, int port, int family, int type,
                                  int protocol, int flags) {
  if (port < 0 || port > 65535)
    throw std::invalid_argument(describe_call(host, std::to_string(port)) + ": port " +
                                std::to_string(port) + " is outside 0-65535");
  return getaddrinfo(host, std::to_string(port), family, type, protocol, flags);
}

std::vector<Address> resolve(std::string_view host, int port) {
  std::vector<Address> found;
  for (AddrInfo& info : getaddrinfo(host, port, AF_UNSPEC, SOCK_STREAM))
    found.push_back(std::move(info.address));
  if (found.empty())
    throw GaiError(EAI_NONAME, describe_call(host, std::to_string(port)) + ": no address found");
  return found;
}

namespace detail {

std::vector<Address> resolve(const std::string& host, int port) {
  if (host.empty()) return {Address::ip("0.0.0.0", port)};
  return net::resolve(host, port);
}

}  // namespace detail
}  // namespace fiberloop::net
