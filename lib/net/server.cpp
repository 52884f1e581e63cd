#include "fiberloop/net/resolver.hpp"
#include "fiberloop/net/server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>
#include <unordered_set>

#include "connection.hpp"
#include "fiberloop/await.hpp"
#include "fiberloop/event_loop.hpp"

namespace fiberloop::net {
namespace detail {

struct ServerState : std::enable_shared_from_this<ServerState> {
  EventLoop* loop = nullptr;
  ClientHandler handler;
  ServerOptions options;
  std::vector<Socket> listeners;
  std::vector<Address> addresses;
  std::vector<Task<void>> acceptors;
  std::unordered_set<Connection*> connections;
  std::string unix_path;  // removed on close
  bool closed = false;
  std::size_t handshake_failures = 0;
  std::vector<Future<void>> close_waiters;  // wait_closed()
  std::vector<Future<void>> serve_waiters;  // serve_forever()

  void start();
  void accept_loop(std::size_t index);
  void serve(Socket sock);
  void close();
  void check_all_closed();
};

// The library's tasks are named "fiberloop.<part> <role> <address>", so that
// all_tasks() tells them from the application's: "fiberloop.server accept
// 127.0.0.1:8080" (one per listening socket), "fiberloop.server connection
// 127.0.0.1:53124" (a handler, named by its peer; by the socket path on a
// unix server), "fiberloop.stream flush <peer>" (streams.cpp).
void ServerState::start() {
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    TaskOptions named{.name = "fiberloop.server accept " + addresses[i].to_string()};
    acceptors.push_back(
        loop->create_task(named, [self = shared_from_this(), i] { self->accept_loop(i); }));
  }
}

namespace {

enum class AcceptFailure {
  kResources,  // EMFILE, ENFILE, ENOBUFS, ENOMEM: report, pause 1 s, go on
  kListener,   // the listening socket itself cannot accept any more: report, stop
  kOther,      // anything else: report once, go on
};

AcceptFailure classify(int err) {
  switch (err) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      return AcceptFailure::kResources;
    case EBADF:     // the listener was closed behind the server's back
    case ENOTSOCK:  // ...and its number reused by another file
    case EINVAL:    // not listening (any more): shutdown(SHUT_RD) on it, say
    case EFAULT:
      return AcceptFailure::kListener;
    default:
      return AcceptFailure::kOther;
  }
}

// kAcceptRetryDelay is asyncio's ACCEPT_RETRY_DELAY: out of fds, let
// connections close before trying again.
constexpr double kAcceptRetryDelay = 1.0;

}  // namespace

// accept_loop(index) accepts on listeners[index] until the server closes.
// Pending network errors of a dead connection (accept(2): ENETDOWN, EPROTO,
// ..., EPERM) are retried inside sock_accept. Of the other failures, none
// ends serving silently: out of resources, it is reported and accepting
// pauses 1 s (asyncio); a listener that cannot accept any more (EBADF,
// ENOTSOCK, EINVAL) is reported and the server closes, so is_serving() says
// false and serve_forever() returns; anything else is reported once per run
// of failures and accepting goes on, after a pause that grows from 10 ms to
// 1 s while the failures repeat, so a lasting error cannot spin the loop.
void ServerState::accept_loop(std::size_t index) {
  int repeated = 0;      // failures since the last accepted connection
  int reported_err = 0;  // the errno of this run's report (0: none yet; -1: not a system_error)
  for (;;) {
    Socket conn;
    try {
      conn = sock_accept(listeners[index]).first;
    } catch (const std::exception& e) {
      if (closed) return;
      const auto* sys = dynamic_cast<const std::system_error*>(&e);
      int err = sys ? sys->code().value() : -1;
      AcceptFailure kind = sys ? classify(err) : AcceptFailure::kOther;
      if (kind == AcceptFailure::kResources) {
        loop->call_exception_handler({"Socket accept failed", std::current_exception(), {}});
        fiberloop::sleep(kAcceptRetryDelay);
        continue;
      }
      if (kind == AcceptFailure::kListener) {
        loop->call_exception_handler(
            {"Socket accept failed: the server stopped serving", std::current_exception(), {}});
        close();
        return;
      }
      if (err != reported_err) {
        loop->call_exception_handler({"Socket accept failed", std::current_exception(), {}});
        reported_err = err;
      }
      // The first failure is retried at once (it most likely belonged to one
      // connection); a repeated one after 10 ms, 20 ms, ... up to 1 s.
      if (repeated++ > 0)
        fiberloop::sleep(std::min(kAcceptRetryDelay, 0.01 * (1 << std::min(repeated - 2, 7))));
      continue;
    }
    repeated = 0;
    reported_err = 0;
    if (conn.family() == AF_INET || conn.family() == AF_INET6) {
      int one = 1;  // asyncio's transports set TCP_NODELAY too: small replies go out at once
      ::setsockopt(conn.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    serve(std::move(conn));
  }
}

HandlerTaskHook& before_handler_task() noexcept {
  static thread_local HandlerTaskHook hook = nullptr;
  return hook;
}

// serve(sock) starts the handler task of an accepted connection. If that
// fails (no memory for the task or its stack, say), the failure is reported,
// the connection closed, and the server goes on accepting.
void ServerState::serve(Socket sock) {
  try {
    auto c = std::make_shared<Connection>(std::move(sock), options.stream);
    // One string per connection, whose task is far bigger anyway.
    TaskOptions named{.name = "fiberloop.server connection " + c->describe()};
    connections.insert(c.get());
    c->on_closed = [self = shared_from_this()](Connection* gone) {
      self->connections.erase(gone);
      self->check_all_closed();
    };
    try {
      if (HandlerTaskHook hook = before_handler_task()) hook();
      loop->create_task(named, [c, self = shared_from_this()] {
        StreamWriter writer(c);
        if (self->options.ssl) {
          try {
            c->start_tls(self->options.ssl, "", self->options.ssl_handshake_timeout);
          } catch (const std::exception&) {
            // Refused, garbage, too slow or gone: that connection only, and
            // no report (asyncio logs it in debug mode alone). The
            // connection is aborted already.
            ++self->handshake_failures;
            return;
          }
        }
        try {
          self->handler(StreamReader(c), writer);
        } catch (const std::exception&) {
          self->loop->call_exception_handler(
              {"Unhandled exception in client_connected_cb", std::current_exception(), {}});
          writer.abort();
        }
      });
    } catch (const std::exception&) {
      c->close(true);  // on_closed: no longer counted, wait_closed() is not held up
      throw;
    }
  } catch (const std::exception&) {
    loop->call_exception_handler(
        {"Could not start client_connected_cb for a connection", std::current_exception(), {}});
  }
}

void ServerState::close() {
  if (closed) return;
  closed = true;
  for (Task<void>& t : acceptors) t.cancel();
  acceptors.clear();
  for (Socket& s : listeners) s.close();
  listeners.clear();
  if (!unix_path.empty()) ::unlink(unix_path.c_str());
  for (Future<void>& f : serve_waiters) {
    try {
      if (!f.done()) f.set_result();
    } catch (const RuntimeError&) {
      // The loop is closed: nobody can be waiting any more.
    }
  }
  serve_waiters.clear();
  check_all_closed();
}

void ServerState::check_all_closed() {
  if (!closed || !connections.empty()) return;
  for (Future<void>& f : close_waiters) {
    try {
      if (!f.done()) f.set_result();
    } catch (const RuntimeError&) {
      // The loop is closed or gone: nobody can be waiting any more.
    }
  }
  close_waiters.clear();
}

}  // namespace detail

namespace {

detail::ServerState& need(const std::shared_ptr<detail::ServerState>& s) {
  if (!s) throw InvalidStateError("operation on an empty Server handle");
  return *s;
}

void check_ssl(const ServerOptions& options) {
  if (options.ssl && !options.ssl.is_server())
    throw std::invalid_argument("start_server(): the SslContext is a client's; use SslContext::server()");
  if (options.ssl && !(options.ssl_handshake_timeout > 0))
    throw std::invalid_argument("start_server(): ssl_handshake_timeout must be positive");
}

Server launch(std::shared_ptr<detail::ServerState> state) {
  state->loop = &get_running_loop();
  for (Socket& s : state->listeners) state->addresses.push_back(s.getsockname());
  state->start();
  return Server(std::move(state));
}

}  // namespace

std::vector<Address> Server::sockets() const {
  const auto& s = need(state_);
  return s.closed ? std::vector<Address>{} : s.addresses;
}
bool Server::is_serving() const { return !need(state_).closed; }
void Server::close() { need(state_).close(); }
std::size_t Server::connection_count() const { return need(state_).connections.size(); }
std::size_t Server::handshake_failures() const { return need(state_).handshake_failures; }

void Server::close_clients() {
  auto& s = need(state_);
  std::vector<std::shared_ptr<detail::Connection>> all;
  for (detail::Connection* c : s.connections) all.push_back(c->shared_from_this());
  for (auto& c : all) c->close(false);
}

void Server::abort_clients() {
  auto& s = need(state_);
  std::vector<std::shared_ptr<detail::Connection>> all;
  for (detail::Connection* c : s.connections) all.push_back(c->shared_from_this());
  for (auto& c : all) c->close(true);
}

void Server::wait_closed() {
  auto self = state_;
  auto& s = need(self);
  if (s.closed && s.connections.empty()) return;
  Future<void> done = get_running_loop().create_future<void>();
  s.close_waiters.push_back(done);
  fiberloop::detail::await_as(done, "Server.wait_closed()", std::source_location::current());
}

void Server::serve_forever() {
  auto self = state_;
  auto& s = need(self);
  if (s.closed) return;
  Future<void> done = get_running_loop().create_future<void>();
  s.serve_waiters.push_back(done);
  fiberloop::detail::await_as(done, "Server.serve_forever()", std::source_location::current());
}

Server start_server(ClientHandler handler, const std::string& host, int port,
                    ServerOptions options) {
  get_running_loop();  // before any socket exists
  check_ssl(options);
  auto state = std::make_shared<detail::ServerState>();
  state->handler = std::move(handler);
  state->options = options;
  for (const Address& address : detail::resolve(host, port)) {
    Socket s(address.family(), SOCK_STREAM);
    if (options.reuse_address) s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
    if (options.reuse_port) s.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
    if (address.family() == AF_INET6) s.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1);
    s.bind(address);
    s.listen(options.backlog);
    state->listeners.push_back(std::move(s));
  }
  return launch(std::move(state));
}

Server start_unix_server(ClientHandler handler, const std::string& path, ServerOptions options) {
  get_running_loop();
  check_ssl(options);
  Address address = Address::unix_path(path);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  auto state = std::make_shared<detail::ServerState>();
  state->handler = std::move(handler);
  state->options = options;
  Socket s(AF_UNIX, SOCK_STREAM);
  s.bind(address);
  s.listen(options.backlog);
  state->listeners.push_back(std::move(s));
  state->unix_path = path;
  return launch(std::move(state));
}

}  // namespace fiberloop::net
