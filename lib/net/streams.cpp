#include "fiberloop/net/resolver.hpp"
#include "fiberloop/net/streams.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "connection.hpp"
#include "receive_scratch.hpp"
#include "fiberloop/await.hpp"
#include "fiberloop/event_loop.hpp"

namespace fiberloop::net {


namespace {
using detail::need;

// reader_of(c) is need(c) for a read call: whatever the call does next
// (even return at once, or throw), it ends the last view's validity.
detail::Connection& reader_of(const std::shared_ptr<detail::Connection>& c) {
  detail::Connection& conn = need(c);
  if (conn.lent) conn.end_loan();  // lent: no read is under way
  return conn;
}

// ReadCall marks, for the length of a StreamReader call, the task making it
// as the connection's reader. A call that suspends is waiting for data, and
// a read by another task meanwhile is refused before it touches the buffer
// or the socket, as asyncio's "readuntil() called while another coroutine is
// already waiting for incoming data": the waiting reader keeps its data.
class ReadCall {
 public:
  ReadCall(detail::Connection& c, const char* what) : c_(c) {
    if (c.reading) [[unlikely]]
      refuse(what);
    // Each reader call counts against the task's cooperative budget: a
    // connection that stays full would otherwise never let the task yield.
    // (Its yield lets others run: they may start reading meanwhile.)
    fiberloop::detail::spend_budget();
    if (c.reading) [[unlikely]]
      refuse(what);
    if (c.lent) c.end_loan();  // this call ends the last view's validity
    c.reading = true;
  }
  ~ReadCall() { c_.reading = false; }
  ReadCall(const ReadCall&) = delete;
  ReadCall& operator=(const ReadCall&) = delete;

 private:
  [[noreturn]] static void refuse(const char* what) {
    throw RuntimeError(std::string("StreamReader::") + what +
                       " called while another task is already waiting for incoming data");
  }
  detail::Connection& c_;
};

// find_separator(data, size, sep, from) is where sep starts in data, at
// or after from; npos if it does not. A one-byte separator (a line's "\n")
// is one memchr: string_view::find adds a compare per candidate.
inline std::size_t find_separator(const char* data, std::size_t size, std::string_view sep,
                                  std::size_t from) noexcept {
  if (sep.size() == 1) {
    const void* at = std::memchr(data + from, sep[0], size - from);
    return at ? static_cast<const char*>(at) - data : std::string_view::npos;
  }
  return std::string_view(data, size).find(sep, from);
}

// through_separator(c, sep, limit) is the length of the buffered bytes
// through the first sep, reading more as needed; 0 at the end of the
// stream, what is left still buffered. Throws LimitOverrunError when sep is
// not within `limit` bytes, leaving the buffer as it was.
std::size_t through_separator(detail::Connection& c, std::string_view sep, std::size_t limit) {
  std::size_t searched = 0;  // bytes known not to start the separator
  for (;;) {
    std::size_t avail = c.buffered();
    if (avail >= sep.size()) {
      std::size_t at = find_separator(c.rdata(), avail, sep, searched);
      if (at != std::string_view::npos) {
        if (at > limit)
          throw LimitOverrunError("Separator is found, but chunk is longer than limit", at);
        return at + sep.size();
      }
      searched = avail + 1 - sep.size();
      if (searched > limit)
        throw LimitOverrunError("Separator is not found, and chunk exceed the limit", searched);
    }
    if (c.eof) return 0;
    c.fill();
  }
}

// until_separator(c, sep) is readuntil()'s length: IncompleteReadError,
// with everything left, at the end of the stream.
std::size_t until_separator(detail::Connection& c, std::string_view sep) {
  std::size_t n = through_separator(c, sep, c.opt.limit);
  if (n == 0) throw IncompleteReadError(c.take(c.buffered()), std::nullopt);
  return n;
}

// line_length(c, limit) is the length of the next line through its "\n",
// or at the end of the stream of what is left (maybe 0). A line over
// `limit` is discarded whole, through its newline, whenever that arrives,
// so that one over-long line is one error and the next read starts at the
// line after it; the LimitOverrunError goes on to the caller.
std::size_t line_length(detail::Connection& c, std::size_t limit,
                        std::size_t room = static_cast<std::size_t>(-1)) {
  // The common case first: a whole line is buffered already.
  if (std::size_t avail = c.buffered(); avail > 0) {
    if (const void* nl = std::memchr(c.rdata(), '\n', avail)) {
      std::size_t n = static_cast<const char*>(nl) - c.rdata() + 1;
      if (n - 1 <= limit && n <= room) return n;
    }
  }
  std::size_t n;
  try {
    n = through_separator(c, "\n", limit);
  } catch (const LimitOverrunError& e) {
    std::string_view view(c.rdata(), c.buffered());
    if (view.substr(e.consumed, 1) == "\n") {
      c.consume(e.consumed + 1);
    } else {
      c.consume(c.buffered());  // no newline buffered ("not found"): the rest
      c.skip_line = true;       // is dropped as it arrives, by fill()
    }
    throw;
  }
  if (n > room) {  // found within the limit, but with its newline it does not fit
    c.consume(n);
    throw LimitOverrunError("Separator is found, but chunk is longer than limit", n - 1);
  }
  return n > 0 ? n : c.buffered();
}

// exact_length(c, n): n once n bytes are buffered; IncompleteReadError, with
// what did arrive, if the stream ends first.
std::size_t exact_length(detail::Connection& c, std::size_t n) {
  while (c.buffered() < n) {
    if (c.eof) throw IncompleteReadError(c.take(c.buffered()), n);
    c.fill();
  }
  return n;
}
}  // namespace

std::string StreamReader::read(std::ptrdiff_t n) {
  detail::Connection& c = reader_of(conn_);
  if (n == 0) return {};
  ReadCall reading(c, "read()");
  if (n < 0) {
    while (c.fill() > 0) {
    }
    return c.take(c.buffered());
  }
  auto want = static_cast<std::size_t>(n);
  if (c.buffered() == 0 && !c.eof && !c.error && !c.skip_line && want >= 4096) {
    // Past the buffer, through the thread's scratch: the result is the size
    // of what came, whatever was asked for.
    char* area = detail::receive_scratch();
    std::size_t got = c.recv_into(area, std::min(want, detail::kReceiveScratch));
    return std::string(area, got);
  }
  if (c.buffered() == 0) c.fill();
  return c.take(std::min(want, c.buffered()));
}

std::size_t StreamReader::read_into(void* buf, std::size_t len) {
  detail::Connection& c = reader_of(conn_);
  if (len == 0) return 0;
  ReadCall reading(c, "read_into()");
  if (c.buffered() == 0) {
    if (c.error) std::rethrow_exception(c.error);
    if (c.eof) return 0;
    if (!c.skip_line) return c.recv_into(buf, len);  // straight into the caller's memory
    if (c.fill() == 0) return 0;                     // the rest of a refused line goes first
  }
  std::size_t n = std::min(len, c.buffered());
  if (n > 0) std::memcpy(buf, c.rdata(), n);
  c.consume(n);
  return n;
}

std::string StreamReader::readuntil(std::string_view sep) {
  detail::Connection& c = reader_of(conn_);
  if (sep.empty()) throw std::invalid_argument("readuntil(): the separator is empty");
  ReadCall reading(c, "readuntil()");
  return c.take(until_separator(c, sep));
}

std::string StreamReader::readline() {
  detail::Connection& c = reader_of(conn_);
  ReadCall reading(c, "readline()");
  return c.take(line_length(c, c.opt.limit));
}

std::string StreamReader::readexactly(std::size_t n) {
  detail::Connection& c = reader_of(conn_);
  if (n == 0) return {};
  ReadCall reading(c, "readexactly()");
  return c.take(exact_length(c, n));
}

std::string_view StreamReader::read_view(std::size_t n) {
  detail::Connection& c = reader_of(conn_);
  if (n == 0) return {};
  ReadCall reading(c, "read_view()");
  if (c.buffered() == 0) c.fill();
  return c.lend(std::min(n, c.buffered()));
}

std::string_view StreamReader::readline_view() {
  detail::Connection& c = reader_of(conn_);
  ReadCall reading(c, "readline_view()");
  return c.lend(line_length(c, c.opt.limit));
}

std::string_view StreamReader::readuntil_view(std::string_view sep) {
  detail::Connection& c = reader_of(conn_);
  if (sep.empty()) throw std::invalid_argument("readuntil_view(): the separator is empty");
  ReadCall reading(c, "readuntil_view()");
  return c.lend(until_separator(c, sep));
}

std::string_view StreamReader::readexactly_view(std::size_t n) {
  detail::Connection& c = reader_of(conn_);
  if (n == 0) return {};
  ReadCall reading(c, "readexactly_view()");
  if (n > c.opt.limit)
    throw LimitOverrunError("readexactly_view(" + std::to_string(n) +
                                "): more than the stream's limit (" +
                                std::to_string(c.opt.limit) + " bytes) at once; use readexactly()",
                            0);
  return c.lend(exact_length(c, n));
}

std::size_t StreamReader::readline_into(void* buf, std::size_t len) {
  detail::Connection& c = reader_of(conn_);
  if (len == 0) throw std::invalid_argument("readline_into(): the buffer is empty (len 0)");
  ReadCall reading(c, "readline_into()");
  // The line and its newline must fit in len: a tighter bound than the
  // stream's limit (an unterminated last line needs no room for one).
  std::size_t n = line_length(c, std::min(c.opt.limit, len), len);
  if (n > 0) std::memcpy(buf, c.rdata(), n);
  c.consume(n);
  return n;
}

bool StreamReader::at_eof() const {
  const detail::Connection& c = need(conn_);
  return c.eof && c.buffered() == 0;
}

std::size_t StreamReader::limit() const { return need(conn_).opt.limit; }

std::size_t StreamReader::buffered() const { return need(conn_).buffered(); }

void StreamWriter::write(std::string_view data) { need(conn_).write(data); }

void StreamWriter::drain() {
  detail::Connection& c = need(conn_);
  c.flush_now();  // an explicit flush of what write() coalesced
  if (!c.error && c.pending() <= c.opt.high_water) return;  // the common case: no wait
  auto self = conn_;  // the connection outlives the wait even if the writer is reassigned
  while (!c.error && c.pending() > c.opt.high_water) {
    Future<void> resumed = get_running_loop().create_future<void>();
    c.drain_waiters.push_back(resumed);
    fiberloop::detail::await_as(resumed, "StreamWriter.drain()", std::source_location::current());
  }
  if (c.error) std::rethrow_exception(c.error);
}

void StreamWriter::write_eof() {
  detail::Connection& c = need(conn_);
  if (c.eof_requested || c.closing) return;
  if (c.tls)
    throw RuntimeError("StreamWriter::write_eof(): TLS has no half-close; close() sends close_notify");
  c.flush_now();  // the coalesced bytes go before the end of the stream
  c.eof_requested = true;
  if (c.pending() == 0 && !c.flushing && c.sock) ::shutdown(c.sock.fd(), SHUT_WR);
}

void StreamWriter::close() { need(conn_).close(false); }
void StreamWriter::abort() { need(conn_).close(true); }
bool StreamWriter::is_closing() const { return need(conn_).closing; }

void StreamWriter::wait_closed() {
  detail::Connection& c = need(conn_);
  auto self = conn_;
  if (c.closed) return;
  Future<void> closed = get_running_loop().create_future<void>();
  c.close_waiters.push_back(closed);
  fiberloop::detail::await_as(closed, "StreamWriter.wait_closed()", std::source_location::current());
}

std::optional<Address> StreamWriter::get_extra_info(std::string_view name) const {
  const detail::Connection& c = need(conn_);
  if (!c.sock) return std::nullopt;
  try {
    if (name == "peername") return c.sock.getpeername();
    if (name == "sockname") return c.sock.getsockname();
  } catch (const std::system_error&) {
    if (name == "peername" && c.sock.peer().family() != AF_UNSPEC) return c.sock.peer();
  }
  return std::nullopt;
}

Socket& StreamWriter::socket() const { return need(conn_).sock; }

std::size_t StreamWriter::write_buffer_size() const { return need(conn_).pending(); }

void StreamWriter::set_write_buffer_limits(std::size_t high, std::size_t low) {
  detail::Connection& c = need(conn_);
  if (low == 0) low = high / 4;
  if (low > high)
    throw std::invalid_argument("set_write_buffer_limits(): low (" + std::to_string(low) +
                                ") is above high (" + std::to_string(high) + ")");
  c.opt.high_water = high;
  c.opt.low_water = low;
}

std::pair<StreamReader, StreamWriter> open_streams(Socket socket, StreamOptions options) {
  auto c = std::make_shared<detail::Connection>(std::move(socket), options);
  return {StreamReader(c), StreamWriter(c)};
}

std::pair<StreamReader, StreamWriter> open_connection(const std::string& host, int port,
                                                      StreamOptions options) {
  std::exception_ptr last;
  for (const Address& address : detail::resolve(host, port)) {
    try {
      Socket s(address.family(), SOCK_STREAM);
      sock_connect(s, address);
      s.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
      return open_streams(std::move(s), options);
    } catch (const std::system_error&) {
      last = std::current_exception();
    }
  }
  std::rethrow_exception(last);
}

std::pair<StreamReader, StreamWriter> open_unix_connection(const std::string& path,
                                                           StreamOptions options) {
  Address address = Address::unix_path(path);
  Socket s(AF_UNIX, SOCK_STREAM);
  sock_connect(s, address);
  return open_streams(std::move(s), options);
}

}  // namespace fiberloop::net
