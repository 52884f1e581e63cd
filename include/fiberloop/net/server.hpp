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
};

// ClientHandler runs as its own task for each accepted connection.
using ClientHandler = std::function<void(StreamReader, StreamWriter)>;

namespace detail {
struct ServerState;
}

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

 private:
  std::shared_ptr<detail::ServerState> state_;
};

// start_server(handler, host, port) binds, listens and starts accepting on
// the running loop; each connection gets handler(reader, writer) as a task
// (an exception escaping it goes to the exception handler and the
// connection is closed). Throws std::system_error naming the address
// (EADDRINUSE...), std::invalid_argument for a host it cannot resolve.
FIBERLOOP_API Server start_server(ClientHandler handler, const std::string& host, int port,
                                  ServerOptions options = {});
// start_unix_server(handler, path) listens on a unix socket; a stale socket
// file at path is replaced, and close() removes it.
FIBERLOOP_API Server start_unix_server(ClientHandler handler, const std::string& path,
                                       ServerOptions options = {});

}  // namespace fiberloop::net
