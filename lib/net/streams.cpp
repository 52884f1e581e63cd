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
namespace detail {

namespace {
constexpr std::size_t kMinRead = 16 * 1024;   // the first buffer; a refill grows it below half
constexpr std::size_t kKeepRead = 64 * 1024;  // a buffer larger than this is freed once empty

// peer_reset(s, e) is the error a lost send reports. After the peer's RST a
// send says ECONNRESET once (the socket's pending error), EPIPE from then
// on, and a reader's recv may have taken the ECONNRESET first; a peer that
// half-closed before resetting leaves EPIPE as the pending error. So EPIPE
// on a TCP socket whose connection is gone (TCP_CLOSE: this side shuts its
// write half only once nothing is left to send) is the peer's reset, and is
// reported as ECONNRESET (asyncio's ConnectionResetError), with the same
// message: the call and the peer. Anything else is e itself.
std::exception_ptr peer_reset(const Socket& s, std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& err) {
    if (err.code() != std::errc::broken_pipe || !s) return e;
    if (s.family() != AF_INET && s.family() != AF_INET6) return e;
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(s.fd(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return e;
    if (info.tcpi_state != TCP_CLOSE) return e;
    std::string what = err.what();
    std::string tail = ": " + err.code().message();
    if (what.size() > tail.size() &&
        what.compare(what.size() - tail.size(), tail.size(), tail) == 0)
      what.resize(what.size() - tail.size());
    return std::make_exception_ptr(std::system_error(ECONNRESET, std::generic_category(), what));
  } catch (...) {
  }
  return e;
}
}  // namespace

Connection::Connection(Socket s, StreamOptions o) : sock(std::move(s)), opt(o) {
  if (opt.low_water > opt.high_water)
    throw std::invalid_argument("StreamOptions: low_water is above high_water");
}

Connection::~Connection() {
  fiberloop::detail::unqueue_flush(&coalesced);
  if (!closed) finish_close();
}

std::string Connection::describe() const {
  Address a = sock.peer();
  try {
    if (a.family() == AF_UNSPEC && sock) a = sock.getpeername();
    if (a.family() == AF_UNIX && a.host().empty() && sock) a = sock.getsockname();
  } catch (const std::system_error&) {
    // Not connected any more: what is known is what there is.
  }
  return a.to_string();
}

std::string Connection::take(std::size_t n) {
  if (n == 0) return {};
  std::string out(rdata(), n);
  consume(n);
  return out;
}

void Connection::consume(std::size_t n) noexcept {
  rbeg += n;
  if (rbeg != rend) return;
  rbeg = rend = 0;
  if (rcap > kKeepRead) {  // a burst grew it: an idle connection keeps none of that
    rbuf.reset();
    rcap = 0;
  }
}

std::size_t Connection::fill() {
  // A connection lost while writing is lost for reading too (asyncio's
  // connection_lost sets the reader's exception); the kernel would say 0.
  if (error) std::rethrow_exception(error);
  if (eof) return 0;
  for (;;) {
    if (rcap - rend < kMinRead / 2) {
      std::size_t kept = rend - rbeg;
      if (rcap - kept < kMinRead / 2) {  // grow, uninitialised, moving the unread bytes
        std::size_t cap = std::max(rcap * 2, kept + kMinRead);
        std::unique_ptr<char[]> grown(new char[cap]);
        if (kept > 0) std::memcpy(grown.get(), rbuf.get() + rbeg, kept);
        rbuf = std::move(grown);
        rcap = cap;
      } else if (kept > 0) {  // room enough once the unread bytes slide to the front
        std::memmove(rbuf.get(), rbuf.get() + rbeg, kept);
      }
      rbeg = 0;
      rend = kept;
    }
    std::size_t n = recv_into(rbuf.get() + rend, rcap - rend);
    if (n == 0) return 0;
    if (skip_line) {  // the rest of a refused line: dropped through its newline
      char* fresh = rbuf.get() + rend;
      const void* nl = std::memchr(fresh, '\n', n);
      if (!nl) continue;
      std::size_t dropped = static_cast<const char*>(nl) - fresh + 1;
      skip_line = false;
      if (dropped == n) continue;
      std::memmove(fresh, fresh + dropped, n - dropped);
      n -= dropped;
    }
    rend += n;
    return n;
  }
}

std::size_t Connection::recv_into(void* buf, std::size_t len) {
  std::size_t n = 0;
  try {
    n = sock_recv_into(sock, buf, len);
  } catch (const std::system_error&) {
    if (!closed) throw;
    n = 0;  // closed by this side while waiting: the end of the stream
  }
  if (n == 0) eof = true;
  return n;
}

void Connection::write(std::string_view data) {
  if (closing) throw RuntimeError("StreamWriter::write(): the writer is closed");
  if (eof_requested) throw RuntimeError("StreamWriter::write(): called after write_eof()");
  if (error || data.empty()) return;
  if (wbeg > 0 && wbeg >= wbuf.size() / 2) {
    wbuf.erase(0, wbeg);
    wbeg = 0;
  }
  wbuf.append(data);
  if (flushing) return;  // the background sender takes it with the rest
  // Coalesced until the writing task waits: a reply per command costs one
  // send per batch, as Redis's before-sleep write does. Past the high-water
  // mark, or outside a task (no wait to come), it goes now.
  if (pending() > opt.high_water || !fiberloop::detail::TaskStateBase::current()) {
    flush_now();
    return;
  }
  if (!coalesced.queued) {
    coalesced.run = [](fiberloop::detail::PendingFlush* f) noexcept {
      auto keep = std::move(static_cast<CoalescedFlush*>(f)->keep);
      keep->flush_now();
    };
    coalesced.keep = shared_from_this();
    fiberloop::detail::queue_flush(&coalesced);
  }
}

void Connection::flush_now() noexcept {
  // Flushed now, the queued flush has nothing left to do: taken back here,
  // a drain() per reply costs the next wait nothing. (The hold outlives
  // every use of `this`: it may be the connection's last owner.)
  std::shared_ptr<Connection> hold;
  if (coalesced.queued) {
    fiberloop::detail::unqueue_flush(&coalesced);
    hold = std::move(coalesced.keep);
  }
  if (flushing || pending() == 0 || error || !sock) return;
  try {
    wbeg += try_send(sock, std::string_view(wbuf).substr(wbeg));
    if (wbeg == wbuf.size()) {
      wbuf.clear();
      wbeg = 0;
      if (eof_requested) ::shutdown(sock.fd(), SHUT_WR);
      return;
    }
    flush_in_background();
  } catch (...) {
    lose(std::current_exception());
  }
}

void Connection::flush_in_background() {
  if (flushing) return;
  if (flush_task.name.empty()) flush_task.name = "fiberloop.stream flush " + describe();
  flushing = true;
  get_running_loop().create_task(flush_task, [self = shared_from_this()] {
    Connection& c = *self;
    struct Done {
      Connection& c;
      ~Done() {
        c.flushing = false;
        c.wake_drainers();
      }
    } done{c};
    while (c.pending() > 0 && !c.error && c.sock) {
      std::size_t n;
      try {
        n = try_send(c.sock, std::string_view(c.wbuf).substr(c.wbeg));
      } catch (const std::system_error&) {
        c.lose(std::current_exception());
        break;
      }
      c.wbeg += n;
      if (c.wbeg == c.wbuf.size()) c.wbuf.clear(), c.wbeg = 0;
      if (c.pending() <= c.opt.low_water) c.wake_drainers();
      if (n == 0) {
        try {
          c.sock.wait(Poller::kWritable);
        } catch (const std::system_error&) {
          if (!c.sock) break;  // aborted under us
          c.lose(std::current_exception());
          break;
        }
      }
    }
    if (c.pending() == 0 && !c.error && c.eof_requested && c.sock) ::shutdown(c.sock.fd(), SHUT_WR);
    if (c.closing && !c.closed) {
      c.flushing = false;
      c.finish_close();
    }
  });
}

void Connection::lose(std::exception_ptr e) {
  if (!error) error = peer_reset(sock, std::move(e));
  wbuf.clear();
  wbeg = 0;
  wake_drainers();
}

void Connection::wake_drainers() {
  for (Future<void>& f : drain_waiters) {
    try {
      if (!f.done()) f.set_result();
    } catch (const RuntimeError&) {
      // The loop is closed: its tasks were unwound, nobody waits any more.
    }
  }
  drain_waiters.clear();
}

void Connection::close(bool abort) {
  if (abort) {
    wbuf.clear();
    wbeg = 0;
  }
  if (closed) return;
  closing = true;
  if (!abort) flush_now();  // coalesced bytes first; the rest in the background
  if (!flushing || abort) finish_close();
}

void Connection::finish_close() noexcept {
  if (closed) return;
  closing = closed = true;
  sock.close();  // forgets the fd first: a task waiting on it wakes with EBADF
  wake_drainers();
  for (Future<void>& f : close_waiters) {
    try {
      if (!f.done()) f.set_result();
    } catch (const RuntimeError&) {
      // The loop is closed or gone: nobody can be waiting any more.
    }
  }
  close_waiters.clear();
  if (on_closed) {
    auto hook = std::move(on_closed);
    hook(this);
  }
}

}  // namespace detail

namespace {
detail::Connection& need(const std::shared_ptr<detail::Connection>& c) {
  if (!c) throw InvalidStateError("operation on an empty StreamReader/StreamWriter");
  return *c;
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
    fiberloop::detail::TaskStateBase::spend_budget();
    if (c.reading) [[unlikely]]
      refuse(what);
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

// readuntil() without the ReadCall: readline() holds it.
std::string read_until(detail::Connection& c, std::string_view sep) {
  std::size_t searched = 0;  // bytes known not to start the separator
  for (;;) {
    std::size_t avail = c.buffered();
    if (avail >= sep.size()) {
      std::string_view view(c.rdata(), avail);
      std::size_t at = view.find(sep, searched);
      if (at != std::string_view::npos) {
        if (at > c.opt.limit)
          throw LimitOverrunError("Separator is found, but chunk is longer than limit", at);
        return c.take(at + sep.size());
      }
      searched = avail + 1 - sep.size();
      if (searched > c.opt.limit)
        throw LimitOverrunError("Separator is not found, and chunk exceed the limit", searched);
    }
    if (c.eof) throw IncompleteReadError(c.take(avail), std::nullopt);
    c.fill();
  }
}
}  // namespace

std::string StreamReader::read(std::ptrdiff_t n) {
  detail::Connection& c = need(conn_);
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
  detail::Connection& c = need(conn_);
  if (len == 0) return 0;
  ReadCall reading(c, "read_into()");
  if (c.buffered() == 0) {
    if (c.error) std::rethrow_exception(c.error);
    if (c.eof) return 0;
    if (!c.skip_line) return c.recv_into(buf, len);  // straight into the caller's memory
    if (c.fill() == 0) return 0;                     // the rest of a refused line goes first
  }
  std::size_t n = std::min(len, c.buffered());
  std::memcpy(buf, c.rdata(), n);
  c.consume(n);
  return n;
}

std::string StreamReader::readuntil(std::string_view sep) {
  detail::Connection& c = need(conn_);
  if (sep.empty()) throw std::invalid_argument("readuntil(): the separator is empty");
  ReadCall reading(c, "readuntil()");
  return read_until(c, sep);
}

std::string StreamReader::readline() {
  detail::Connection& c = need(conn_);
  ReadCall reading(c, "readline()");
  try {
    return read_until(c, "\n");
  } catch (IncompleteReadError& e) {
    return std::move(e.partial);
  } catch (const LimitOverrunError& e) {
    // The whole line goes, through its newline, so that one over-long line
    // is one error and the next readline() returns the line after it.
    std::string_view view(c.rdata(), c.buffered());
    if (view.substr(e.consumed, 1) == "\n") {
      c.consume(e.consumed + 1);
    } else {
      c.consume(c.buffered());  // no newline buffered ("not found"): the rest
      c.skip_line = true;       // is dropped as it arrives, by fill()
    }
    throw;
  }
}

std::string StreamReader::readexactly(std::size_t n) {
  detail::Connection& c = need(conn_);
  if (n == 0) return {};
  ReadCall reading(c, "readexactly()");
  while (c.buffered() < n) {
    if (c.eof) throw IncompleteReadError(c.take(c.buffered()), n);
    c.fill();
  }
  return c.take(n);
}

bool StreamReader::at_eof() const {
  const detail::Connection& c = need(conn_);
  return c.eof && c.buffered() == 0;
}

std::size_t StreamReader::limit() const { return need(conn_).opt.limit; }

void StreamWriter::write(std::string_view data) { need(conn_).write(data); }

void StreamWriter::drain() {
  detail::Connection& c = need(conn_);
  c.flush_now();  // an explicit flush of what write() coalesced
  if (!c.error && c.pending() <= c.opt.high_water) return;  // the common case: no wait
  auto self = conn_;  // the connection outlives the wait even if the writer is reassigned
  while (!c.error && c.pending() > c.opt.high_water) {
    Future<void> resumed = get_running_loop().create_future<void>();
    c.drain_waiters.push_back(resumed);
    await(resumed);
  }
  if (c.error) std::rethrow_exception(c.error);
}

void StreamWriter::write_eof() {
  detail::Connection& c = need(conn_);
  if (c.eof_requested || c.closing) return;
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
  await(closed);
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
