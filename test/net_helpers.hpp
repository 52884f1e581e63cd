// net_helpers.hpp: what the networking test suites share.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <fiberloop/fiberloop.hpp>
#include <ostream>
#include <string>

namespace net = fiberloop::net;

// resident_kib() is this process's resident set size now.
inline long resident_kib() {
  long pages = 0, resident = 0;
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  BOOST_REQUIRE(f);
  BOOST_REQUIRE(std::fscanf(f, "%ld %ld", &pages, &resident) == 2);
  std::fclose(f);
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

// peak_kib() is the high-water mark of the resident set (VmHWM).
inline long peak_kib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  BOOST_REQUIRE(f);
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

// reset_peak() restarts VmHWM from the current RSS (Linux >= 4.0).
inline bool reset_peak() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  bool ok = std::fputs("5", f) >= 0;
  std::fclose(f);
  return ok;
}

// pattern(i) is the byte at offset i of a test transfer: not periodic in
// any small power of two, so a lost or repeated chunk shows.
inline char pattern(std::size_t i) {
  return static_cast<char>((i * 7 + i / 251 + i / 65521) & 0xff);
}

// blocking_echo_rounds(at, rounds) is a plain blocking client, for another
// thread: it connects to `at`, then `rounds` times sends 64 bytes and reads
// the 64 echoed back. True if every round trip completed.
inline bool blocking_echo_rounds(const net::Address& at, int rounds) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  bool ok = ::connect(fd, at.data(), at.size()) == 0;
  int one = 1;
  if (ok) ::setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
  char msg[64] = "ping", back[64];
  for (int i = 0; i < rounds && ok; ++i) {
    ok = ::send(fd, msg, 64, MSG_NOSIGNAL) == 64;
    std::size_t got = 0;
    while (ok && got < 64) {
      ssize_t n = ::recv(fd, back + got, 64 - got, 0);
      ok = n > 0;
      got += n > 0 ? static_cast<std::size_t>(n) : 0;
    }
  }
  ::close(fd);
  return ok;
}

// unused_port() is a loopback TCP port nobody listens on right now.
inline int unused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// listener() is a listening TCP socket on 127.0.0.1, some free port.
inline net::Socket listener(int backlog = 128) {
  net::Socket s(AF_INET, SOCK_STREAM);
  s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
  s.bind(net::Address::ip("127.0.0.1", 0));
  s.listen(backlog);
  return s;
}

// StreamPair is a stream pair on one end of a TCP connection and a raw
// socket on the other: stream_pair(options) makes one, inside a task.
struct StreamPair {
  net::StreamReader reader;
  net::StreamWriter writer;
  net::Socket raw;
};

inline StreamPair stream_pair(net::StreamOptions options = {}) {
  net::Socket server = listener();
  auto [reader, writer] = net::open_connection("127.0.0.1", server.getsockname().port(), options);
  net::Socket raw = net::sock_accept(server).first;
  return {reader, writer, std::move(raw)};
}

// reset_on_close(s) makes closing s send RST instead of FIN.
inline void reset_on_close(int fd) {
  linger l{1, 0};
  BOOST_REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
}

// raise_nofile(want) lifts the soft fd limit toward the hard one; returns
// the soft limit now.
inline rlim_t raise_nofile(rlim_t want) {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < want) {
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? want : std::min(want, lim.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

// enough_fds_for(clients) raises the fd limit for `clients` connections with
// both ends in this process; false (the case is skipped, with a message
// saying why) when the hard limit does not allow it.
inline bool enough_fds_for(int clients) {
  rlim_t want = 2 * static_cast<rlim_t>(clients) + 100;
  rlim_t have = raise_nofile(want + 100);
  if (have >= want) return true;
  BOOST_TEST_MESSAGE("skipped: RLIMIT_NOFILE is " << have << ", " << want << " needed");
  return false;
}

namespace fiberloop::net {
inline std::ostream& operator<<(std::ostream& os, const Address& a) { return os << a.to_string(); }
}  // namespace fiberloop::net
