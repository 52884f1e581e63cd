// net/streams.hpp: StreamReader / StreamWriter over a connected socket, and open_connection().
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "fiberloop/errors.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/net/address.hpp"
#include "fiberloop/net/socket.hpp"
#include "fiberloop/net/tls.hpp"

namespace fiberloop::net {

// StreamOptions are the buffer bounds of a connection (asyncio's defaults).
struct StreamOptions {
  std::size_t limit = 64 * 1024;       // readline/readuntil refuse longer lines
  std::size_t high_water = 64 * 1024;  // drain() blocks above this much unsent data...
  std::size_t low_water = 16 * 1024;   // ...until it is back at or below this
};

// ConnectOptions are open_connection's keyword arguments.
struct ConnectOptions {
  StreamOptions stream{};
  // ssl: a context makes it a TLS connection (SslContext::client() verifies
  // the server's certificate and host name); empty: plain TCP.
  SslContext ssl{};
  // server_hostname: the name sent in SNI and checked against the
  // certificate; empty: the host argument. (An IP address is checked
  // against the certificate's IP entries and not sent in SNI.)
  std::string server_hostname{};
  // ssl_handshake_timeout: seconds the handshake may take before the
  // connection is aborted (asyncio's default, 60).
  double ssl_handshake_timeout = 60.0;
};

// StartTlsOptions are StreamWriter::start_tls's keyword arguments (as ConnectOptions').
struct StartTlsOptions {
  std::string server_hostname{};
  double ssl_handshake_timeout = 60.0;
};

namespace detail {
class Connection;
}

// StreamReader reads from a connection, as asyncio.StreamReader. A cheap
// handle: copies share the connection. One task reads at a time: a read
// call while another task waits for data in one throws RuntimeError
// ("StreamReader::readline() called while another task is already waiting
// for incoming data", as asyncio's), leaving the waiting reader and its data
// alone. Reads throw std::system_error naming the peer (e.g. ECONNRESET); a
// connection closed by this side reads as end of stream.
class FIBERLOOP_API StreamReader {
 public:
  StreamReader() = default;
  explicit StreamReader(std::shared_ptr<detail::Connection> c) : conn_(std::move(c)) {}

  // read(n) returns up to n bytes (waiting for at least one), "" at end of
  // stream; read() (n < 0) reads until the end of the stream. The string is
  // the size of what came: read(1 MiB) answered by one byte holds one byte.
  // With nothing buffered, one call returns at most 256 KiB.
  std::string read(std::ptrdiff_t n = -1);
  // read_into(buf, len) is read(len) into caller memory: no allocation.
  std::size_t read_into(void* buf, std::size_t len);
  // readline() reads through "\n"; at end of stream, what is left (maybe "").
  // Throws LimitOverrunError past the limit and discards the whole line,
  // through its newline, whenever that arrives: one over-long line is one
  // error, and the next read (of any kind) starts at the line after it.
  std::string readline();
  // readexactly(n) reads n bytes. Throws IncompleteReadError (with the bytes
  // that did arrive) if the stream ends first.
  std::string readexactly(std::size_t n);
  // readuntil(sep) reads through sep. Throws IncompleteReadError at end of
  // stream (partial: everything left), LimitOverrunError if sep is not found
  // within the limit — the buffered bytes stay readable then.
  std::string readuntil(std::string_view separator = "\n");
  // at_eof() is true once the stream ended and the buffer is empty.
  bool at_eof() const;
  // buffered() is how many bytes are buffered: what the next read can hand
  // out without waiting. A server reads on while it is non-zero and writes
  // its replies once it is zero (a reply per batch, not per request).
  std::size_t buffered() const;

  // Zero-copy reads: the same as the calls above, but the bytes are handed
  // out as a view into the connection's buffer instead of a new string.
  // The view is valid until the next read call on this reader or any copy
  // of it (whatever the call, and even if it throws), or until the last
  // copy of the reader and the writer is gone; keep bytes longer by copying
  // them. ASan builds move the buffer at every read call that follows
  // a view, so a view used too late is reported as a heap-use-after-free.
  //
  //   while (!(line = reader.readline_view()).empty()) handle(line);
  //
  // read_view(n) is read(n) for n >= 1: up to n bytes (waiting for at least
  // one), "" at end of stream, at most one buffer's fill (16 KiB at first).
  std::string_view read_view(std::size_t n = static_cast<std::size_t>(-1));
  // readline_view(), readuntil_view(sep): readline() and readuntil(sep),
  // with the same errors and the same handling of over-long lines.
  std::string_view readline_view();
  std::string_view readuntil_view(std::string_view separator = "\n");
  // readexactly_view(n) is readexactly(n) for n up to the limit (the buffer
  // must hold all n bytes at once): a larger n throws LimitOverrunError
  // (consumed 0) and reads nothing; readexactly() or read_into() take any n.
  std::string_view readexactly_view(std::size_t n);
  // readline_into(buf, len) is readline() into caller memory: the line
  // through its "\n" (at end of stream, what is left), its length returned,
  // 0 at end of stream. A line that does not fit in len bytes, or is over
  // the limit, throws LimitOverrunError and is discarded through its
  // newline, as readline() discards an over-long line. len 0 throws
  // std::invalid_argument.
  std::size_t readline_into(void* buf, std::size_t len);
  // limit() is the line limit.
  std::size_t limit() const;

 private:
  std::shared_ptr<detail::Connection> conn_;
};

// StreamWriter writes to a connection, as asyncio.StreamWriter: write()
// never blocks (what the kernel does not take is buffered and sent by a
// background task), drain() applies back-pressure.
class FIBERLOOP_API StreamWriter {
 public:
  StreamWriter() = default;
  explicit StreamWriter(std::shared_ptr<detail::Connection> c) : conn_(std::move(c)) {}

  // write(data) sends or buffers data. Throws RuntimeError after close() or
  // write_eof(). After the connection broke the data is dropped and drain()
  // throws the error (asyncio's behaviour).
  void write(std::string_view data);
  // writelines(lines) writes each element in order.
  template <class Range>
  void writelines(const Range& lines) {
    for (const auto& line : lines) write(std::string_view(line));
  }
  // drain() waits while more than high_water bytes are unsent, until at most
  // low_water remain. Throws std::system_error if the connection broke
  // (EPIPE, ECONNRESET). Inside a task; several tasks may drain at once
  // (each is woken), as in asyncio.
  void drain();
  // write_eof() half-closes (shutdown(SHUT_WR)) once the buffer is sent.
  // TLS has no half-close: on a TLS connection it throws RuntimeError
  // (asyncio's NotImplementedError) and can_write_eof() is false.
  void write_eof();
  bool can_write_eof() const;
  // close() closes the connection once the buffer is sent; abort() at once,
  // dropping it. Both idempotent. A TLS connection's close() sends
  // close_notify first (without waiting for the peer's); abort() does not.
  void close();
  void abort();
  bool is_closing() const;
  // wait_closed() waits until the socket is closed. Inside a task.
  void wait_closed();
  // get_extra_info("peername" | "sockname") is the address; nullopt for
  // another name or a closed socket.
  std::optional<Address> get_extra_info(std::string_view name) const;
  // socket() is the connection's socket, for socket options (asyncio's
  // get_extra_info("socket")): socket().setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1),
  // or ::getsockopt(socket().fd(), ...). The connection owns it: do not
  // close, move, read or write it. Closed (fd() < 0, setsockopt throws
  // EBADF) once the connection is. Shared by the copies of the writer.
  Socket& socket() const;
  // write_buffer_size() is the unsent byte count; set_write_buffer_limits
  // changes the marks (low 0: high / 4). Throws std::invalid_argument if low > high.
  std::size_t write_buffer_size() const;
  void set_write_buffer_limits(std::size_t high, std::size_t low = 0);

  // start_tls(ctx) upgrades the open connection to TLS (STARTTLS): what
  // was written is sent first, then the handshake runs, as the client's
  // (a client context) or the server's (SslContext::server). The reader and
  // the writer (and their copies) go on over TLS. Bytes the reader has
  // buffered but not handed out are the peer's first TLS bytes. Throws what
  // open_connection's handshake throws (SslError, SslCertVerificationError,
  // std::system_error ECONNABORTED at the timeout, ECONNRESET if the peer
  // closes), and the connection is aborted then; RuntimeError if the
  // connection is TLS already, closing, or being read by another task.
  // Inside a task.
  void start_tls(const SslContext& ctx, StartTlsOptions options = {});
  // tls() describes the TLS session; nullopt on a plain connection.
  std::optional<TlsInfo> tls() const;

 private:
  std::shared_ptr<detail::Connection> conn_;
};

// open_connection(host, port) connects over TCP (TCP_NODELAY, as asyncio)
// and returns the stream pair. Inside a task. Throws std::system_error
// naming the address, std::invalid_argument for a host it cannot resolve.
FIBERLOOP_API std::pair<StreamReader, StreamWriter> open_connection(const std::string& host,
                                                                    int port,
                                                                    StreamOptions options = {});
// open_connection(host, port, {.ssl = ctx, ...}) is the same with
// ConnectOptions; with a context it is TLS, returned once the handshake is
// done. A refused certificate is SslCertVerificationError (why, and the host
// name), another TLS failure SslError (OpenSSL's reason), a handshake past
// its timeout std::system_error ECONNABORTED ("TLS handshake with ... is
// taking longer than 60 seconds: aborting the connection"), a peer that
// closes during it ECONNRESET; the socket is closed in each case.
FIBERLOOP_API std::pair<StreamReader, StreamWriter> open_connection(const std::string& host,
                                                                    int port,
                                                                    const ConnectOptions& options);
// open_unix_connection(path) is the same over a unix stream socket.
FIBERLOOP_API std::pair<StreamReader, StreamWriter> open_unix_connection(
    const std::string& path, StreamOptions options = {});
// open_streams(socket) wraps a connected stream socket.
FIBERLOOP_API std::pair<StreamReader, StreamWriter> open_streams(Socket socket,
                                                                 StreamOptions options = {});

}  // namespace fiberloop::net
