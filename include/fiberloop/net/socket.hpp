// net/socket.hpp: Socket, an RAII non-blocking socket, and asyncio's sock_* calls.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "fiberloop/detail/io_table.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/net/address.hpp"

namespace fiberloop::net {

// Socket owns a non-blocking, close-on-exec socket. Before closing it
// removes its fd from the loop it waited in (forget_fd), so a closed
// socket's registration can never outlive it, whatever dups exist.
//
// Example (inside a task):
//   Socket s(AF_INET, SOCK_STREAM);
//   sock_connect(s, Address::ip("127.0.0.1", 8080));
//   sock_sendall(s, "ping");
//   std::string reply = sock_recv(s, 4096);
//
// Owner: move-only; destroying it closes it. A Socket that waited in a loop
// must be closed on that loop's thread (it may outlive the loop).
class FIBERLOOP_API Socket {
 public:
  Socket() noexcept = default;
  // Socket(family, type, protocol) opens a socket. Throws std::system_error("socket").
  Socket(int family, int type, int protocol = 0);
  // adopt(fd) takes ownership of an open socket fd and makes it non-blocking
  // and close-on-exec. Throws std::system_error (fd is closed then).
  static Socket adopt(int fd);

  Socket(Socket&& o) noexcept { *this = std::move(o); }
  Socket& operator=(Socket&& o) noexcept;
  ~Socket() { close(); }

  int fd() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int family() const noexcept { return family_; }
  int type() const noexcept { return type_; }

  // close() forgets the fd in its loop, then closes it. Idempotent.
  void close() noexcept;

  // bind / listen / shutdown / setsockopt: the system calls, throwing
  // std::system_error naming the call and the address.
  void bind(const Address& address);
  void listen(int backlog = 100);
  void shutdown(int how);
  void setsockopt(int level, int name, int value);
  // getsockopt(level, name) reads an int option (SO_KEEPALIVE, TCP_NODELAY,
  // SO_RCVBUF...). Throws std::system_error naming the call.
  int getsockopt(int level, int name) const;
  // getsockname() / getpeername(): throw std::system_error.
  Address getsockname() const;
  Address getpeername() const;
  // peer() is the address connected to or accepted from (empty otherwise);
  // it stays known after the connection breaks, for error messages.
  const Address& peer() const noexcept { return peer_; }
  void set_peer(const Address& address) { peer_ = address; }

  // wait(kind) waits for Poller::kReadable / kWritable in the running loop.
  void wait(std::uint32_t kind);

 private:
  friend std::size_t sock_recv_into(Socket&, void*, std::size_t);
  friend std::pair<Socket, Address> sock_accept(Socket&);
  friend void sock_connect(Socket&, const Address&);
  friend std::string sock_recv(Socket&, std::size_t);

  // recv_now(buf, len) is one read that never suspends: the bytes read, 0
  // at the end of a stream, or -1 (errno EAGAIN) when nothing is there now.
  // Throws std::system_error for anything else.
  ssize_t recv_now(void* buf, std::size_t len);

  int fd_ = -1;
  int family_ = AF_UNSPEC;
  int type_ = 0;
  // read_drained_: the last read of a stream came back short, so the kernel
  // buffer was empty: the next read waits for readiness first instead of
  // paying for a recv that would say EAGAIN.
  bool read_drained_ = false;
  fiberloop::detail::Ref<fiberloop::detail::LoopLink> loop_;  // the loop fd is registered with
  // registration_: fd's entry in loop_'s table, so that a wait skips the lookup.
  fiberloop::detail::IoRegistration registration_;
  Address peer_;  // last: every call touches the members above, only errors this one
};

// The sock_* calls are asyncio's, blocking-style: they run inside a task and
// suspend only that task. Each tries the system call first and waits for
// readiness only when it says EAGAIN. Errors are std::system_error whose
// message names the call and the peer ("sock_recv from 127.0.0.1:80").
// Sends use MSG_NOSIGNAL: a closed peer is EPIPE, never SIGPIPE.

// sock_recv(s, max) reads up to max bytes; "" at end of stream. The string
// holds what was read, whatever max: the bytes land in a per-thread
// scratch area and are copied out at their size. On a stream socket one
// call reads at most 256 KiB (the scratch's size); a datagram socket's max
// above that gets a buffer of its own (not zero-filled, freed at once).
FIBERLOOP_API std::string sock_recv(Socket& s, std::size_t max);
// sock_recv_into(s, buf, len) reads up to len bytes into buf; 0 at end of stream.
FIBERLOOP_API std::size_t sock_recv_into(Socket& s, void* buf, std::size_t len);
// sock_sendall(s, data) sends every byte of data.
FIBERLOOP_API void sock_sendall(Socket& s, std::string_view data);
// sock_connect(s, address) connects, waiting for a non-blocking connect to finish.
FIBERLOOP_API void sock_connect(Socket& s, const Address& address);
// sock_accept(s) accepts a connection: the new socket and the peer's address.
// A connection that died in the queue (ECONNABORTED, and the pending network
// errors Linux passes on from accept: ENETDOWN, EPROTO, ENOPROTOOPT,
// EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, EPERM) is
// skipped, as accept(2) advises: the call goes on to the next one.
FIBERLOOP_API std::pair<Socket, Address> sock_accept(Socket& s);
// sock_sendto(s, data, address) sends one datagram; returns the bytes sent.
FIBERLOOP_API std::size_t sock_sendto(Socket& s, std::string_view data, const Address& address);
// sock_recvfrom(s, max) receives one datagram (truncated to max) and its
// sender; the string holds the datagram's bytes only, as sock_recv's.
FIBERLOOP_API std::pair<std::string, Address> sock_recvfrom(Socket& s, std::size_t max);

// try_send(s, data) is one non-blocking send: the bytes taken (0 if the
// kernel buffer is full). Throws std::system_error like sock_sendall.
FIBERLOOP_API std::size_t try_send(Socket& s, std::string_view data);

namespace detail {
// Test seam, not API: the accept4(2) that sock_accept calls on this thread;
// null (the default) is the system's. Tests use it to make accept fail in
// ways the kernel shows only under conditions they cannot create.
using Accept4Function = int (*)(int fd, sockaddr* addr, socklen_t* len, int flags);
FIBERLOOP_API Accept4Function& accept4_function() noexcept;
}  // namespace detail

}  // namespace fiberloop::net
