// net/server.hpp: start_server() / start_unix_server() and Server, as asyncio's.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fiberloop/export.hpp"
#include "fiberloop/net/address.hpp"
#include "fiberloop/net/streams.hpp"

namespace fiberloop {
class EventLoop;
}

namespace fiberloop::net {

// ServerOptions are start_server's keyword arguments.
struct ServerOptions {
  int backlog = 100;
  bool reuse_address = true;  // SO_REUSEADDR (TCP)
  bool reuse_port = false;    // SO_REUSEPORT: several servers share the port
  StreamOptions stream{};     // each connection's limits
  // ssl: a server context (SslContext::server) makes every connection TLS:
  // the handshake runs before the handler is started, under
  // ssl_handshake_timeout seconds. A connection whose handshake fails (a
  // refused client certificate, garbage instead of a ClientHello, the
  // timeout, the peer gone) is closed without a report, as asyncio's (its
  // OSError goes to the debug log only); handshake_failures() counts them.
  SslContext ssl{};
  double ssl_handshake_timeout = 60.0;
};

// ClientHandler runs as its own task for each accepted connection.
using ClientHandler = std::function<void(StreamReader, StreamWriter)>;

namespace detail {
struct ServerState;
// Test seam, not API: called on this thread just before a server creates a
// connection's handler task; a test's hook throws to make that creation
// fail. Null (the default): nothing.
using HandlerTaskHook = void (*)();
FIBERLOOP_API HandlerTaskHook& before_handler_task() noexcept;
}  // namespace detail

// Server is a listening server, as asyncio.Server. A cheap handle.
//
// Example (inside a task):
//   auto server = fiberloop::net::start_server(
//       [](StreamReader r, StreamWriter w) { w.write(r.readline()); }, "127.0.0.1", 0);
//   int port = server.sockets()[0].port();
//   server.serve_forever();
class FIBERLOOP_API Server {
 public:
  Server() = default;
  explicit Server(std::shared_ptr<detail::ServerState> s) : state_(std::move(s)) {}

  // sockets() is the bound addresses (the port picked, for port 0).
  std::vector<Address> sockets() const;
  bool is_serving() const;
  // close() stops listening; connections already accepted carry on (asyncio
  // 3.13). Idempotent.
  void close();
  // close_clients() closes every accepted connection once its buffer is
  // sent; abort_clients() at once (asyncio 3.13). A handler reading then
  // sees the end of the stream.
  void close_clients();
  void abort_clients();
  // wait_closed() waits until close() was called and every connection is
  // closed (asyncio 3.12+). Inside a task.
  void wait_closed();
  // serve_forever() waits until close() is called (asyncio raises
  // CancelledError there; here it returns). Inside a task.
  void serve_forever();
  // connection_count() is how many accepted connections are open.
  std::size_t connection_count() const;
  // handshake_failures() is how many TLS handshakes failed (0 on a plain server).
  std::size_t handshake_failures() const;

 private:
  std::shared_ptr<detail::ServerState> state_;
};

// start_server(handler, host, port) binds, listens and starts accepting on
// the running loop; each connection gets handler(reader, writer) as a task
// (an exception escaping it goes to the exception handler and the
// connection is closed). Throws std::system_error naming the address
// (EADDRINUSE...), std::invalid_argument for a host it cannot resolve or
// one with a NUL byte.
//
// Accepting never stops silently. A connection that died in the queue
// (accept(2)'s pending network errors: ENETDOWN, EPROTO, ENOPROTOOPT,
// EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, EPERM;
// ECONNABORTED) is skipped without a report. Out of fds or memory (EMFILE,
// ENFILE, ENOBUFS, ENOMEM): reported through the loop's exception handler
// ("Socket accept failed"), accepting pauses 1 s, as asyncio's. A listening
// socket that cannot accept any more (EBADF, ENOTSOCK, EINVAL: closed or
// shut down behind the server's back): reported, and the server closes —
// is_serving() is false, serve_forever() returns. Any other error is
// reported once per run of failures and accepting goes on, the retries
// spaced 10 ms, 20 ms... up to 1 s while it repeats. A handler task that
// cannot be created is reported ("Could not start client_connected_cb for a
// connection") and its connection closed; serving goes on.
FIBERLOOP_API Server start_server(ClientHandler handler, const std::string& host, int port,
                                  ServerOptions options = {});
// start_unix_server(handler, path) listens on a unix socket; a stale socket
// file at path is replaced, and close() removes it. A path with a NUL byte
// (past an abstract name's first) is std::invalid_argument.
FIBERLOOP_API Server start_unix_server(ClientHandler handler, const std::string& path,
                                       ServerOptions options = {});

}  // namespace fiberloop::net
