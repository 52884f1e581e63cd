// tls_streams.cpp: streams over TLS: the handshake on a connection, start_tls,
// and open_connection with ConnectOptions.
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstdio>
#include <system_error>

#include "connection.hpp"
#include "tls_channel.hpp"
#include "fiberloop/await.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/net/resolver.hpp"
#include "fiberloop/net/streams.hpp"

namespace fiberloop::net {
namespace detail {

namespace {
std::string seconds_text(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", s);
  return text;
}
}  // namespace

void Connection::start_tls(const SslContext& ctx, const std::string& hostname, double timeout) {
  if (!ctx) throw std::invalid_argument("start_tls(): the SslContext is empty");
  if (!(timeout > 0))
    throw std::invalid_argument("start_tls(): ssl_handshake_timeout must be positive, not " +
                                seconds_text(timeout));
  if (tls) throw RuntimeError("start_tls(): the connection is TLS already");
  if (closing) throw RuntimeError("start_tls(): the connection is closing");
  if (reading) throw RuntimeError("start_tls(): another task is reading the connection");
  EventLoop& loop = get_running_loop();
  auto self = shared_from_this();
  // What was written in plaintext goes first, all of it (asyncio drains too).
  flush_now();
  while (!error && (flushing || pending() > 0)) {
    Future<void> sent = loop.create_future<void>();
    drain_waiters.push_back(sent);
    fiberloop::detail::await_as(sent, "StreamWriter.start_tls()", std::source_location::current());
  }
  if (error) std::rethrow_exception(error);
  if (closing) throw RuntimeError("start_tls(): the connection was closed meanwhile");

  reading = true;  // no read while the handshake runs
  struct EndRead {
    Connection& c;
    ~EndRead() { c.reading = false; }
  } end_read{*this};
  // The buffered bytes leave the buffer once the channel exists: a
  // server_hostname the channel refuses leaves them readable in plaintext.
  std::string early = buffered() > 0 ? std::string(rdata(), buffered()) : std::string();
  tls = std::make_unique<TlsChannel>(ctx, sock, hostname, std::move(early));
  consume(buffered());
  bool timed_out = false;
  TimerHandle deadline = loop.call_later(timeout, [this, &timed_out] {
    timed_out = true;
    close(true);  // the handshake's wait wakes with EBADF
  });
  try {
    tls->handshake();
  } catch (...) {
    deadline.cancel();
    if (!timed_out) {
      close(true);
      throw;
    }
    throw std::system_error(ECONNABORTED, std::generic_category(),
                            "TLS handshake with " + sock.peer().to_string() +
                                " is taking longer than " + seconds_text(timeout) +
                                " seconds: aborting the connection");
  }
  deadline.cancel();
}

}  // namespace detail

using detail::need;

bool StreamWriter::can_write_eof() const { return !need(conn_).tls; }

void StreamWriter::start_tls(const SslContext& ctx, StartTlsOptions options) {
  need(conn_).start_tls(ctx, options.server_hostname, options.ssl_handshake_timeout);
}

std::optional<TlsInfo> StreamWriter::tls() const {
  const detail::Connection& c = need(conn_);
  if (!c.tls) return std::nullopt;
  TlsInfo info = c.tls->info();
  if (c.closed) info.native_handle = nullptr;
  return info;
}

std::pair<StreamReader, StreamWriter> open_connection(const std::string& host, int port,
                                                      const ConnectOptions& options) {
  if (!options.ssl) return open_connection(host, port, options.stream);
  if (options.ssl.is_server())
    throw std::invalid_argument("open_connection(): the SslContext is a server's");
  std::exception_ptr last;
  for (const Address& address : detail::resolve(host, port)) {
    Socket s;
    try {
      s = Socket(address.family(), SOCK_STREAM);
      sock_connect(s, address);
      s.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
    } catch (const std::system_error&) {
      last = std::current_exception();
      continue;
    }
    auto streams = open_streams(std::move(s), options.stream);
    const std::string& name = options.server_hostname.empty() ? host : options.server_hostname;
    streams.second.start_tls(options.ssl, {.server_hostname = name,
                                           .ssl_handshake_timeout = options.ssl_handshake_timeout});
    return streams;
  }
  std::rethrow_exception(last);
}

}  // namespace fiberloop::net
