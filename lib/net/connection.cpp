// connection.cpp: a stream's shared state: the socket, its read buffer,
// the coalesced writes and the flush behind them.
#include "fiberloop/net/streams.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "connection.hpp"
#include "receive_scratch.hpp"
#include "tls_channel.hpp"
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

Connection::Connection(Socket s, StreamOptions o) : opt(o), sock(std::move(s)) {
  coalesced.run = [](fiberloop::detail::PendingFlush* f) noexcept {
    auto keep = std::move(static_cast<CoalescedFlush*>(f)->keep);
    keep->flush_now();
  };
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

void Connection::restart_empty() noexcept {
  rbeg = rend = 0;
  if (rcap > kKeepRead) {  // a burst grew it: an idle connection keeps none of that
    rbuf.reset();
    rcap = 0;
  }
}

void Connection::move_buffer() {
  // Under ASan a view used after its loan ended then reads freed memory,
  // which ASan reports, instead of bytes that happen to be there.
  std::size_t kept = buffered();
  std::unique_ptr<char[]> moved(new char[rcap]);
  if (kept > 0) std::memcpy(moved.get(), rdata(), kept);
  rbuf = std::move(moved);
  rbeg = 0;
  rend = kept;
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
    n = tls ? tls->recv(buf, len) : sock_recv_into(sock, buf, len);
  } catch (const std::system_error&) {
    if (!closed) throw;
    n = 0;  // closed by this side while waiting: the end of the stream
  }
  if (n == 0) eof = true;
  return n;
}

std::size_t Connection::send_some(std::string_view data) {
  return tls ? tls->send(data) : try_send(sock, data);
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
  if (pending() > opt.high_water || !fiberloop::detail::running_task()) {
    flush_now();
    return;
  }
  if (!coalesced.queued) {
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
    wbeg += send_some(std::string_view(wbuf).substr(wbeg));
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
        n = c.send_some(std::string_view(c.wbuf).substr(c.wbeg));
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
    aborted = true;
  }
  if (closed) return;
  closing = true;
  if (!abort) flush_now();  // coalesced bytes first; the rest in the background
  if (!flushing || abort) finish_close();
}

void Connection::finish_close() noexcept {
  if (closed) return;
  closing = closed = true;
  if (tls) {
    if (!aborted && !error) tls->close_notify();
    tls->detach();
  }
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
}  // namespace fiberloop::net
