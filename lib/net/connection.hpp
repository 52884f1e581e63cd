// lib/net/connection.hpp: the state a StreamReader / StreamWriter pair shares (private).
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fiberloop/detail/pending_flush.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/net/socket.hpp"
#include "fiberloop/net/streams.hpp"

namespace fiberloop::net::detail {

class TlsChannel;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Socket s, StreamOptions o);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // describe() names the connection for the library's task names: the peer,
  // else (an unnamed unix peer) the local address.
  std::string describe() const;

  // Read side.
  std::size_t buffered() const noexcept { return rend - rbeg; }
  const char* rdata() const noexcept { return rbuf.get() + rbeg; }
  std::string take(std::size_t n);  // n buffered bytes, in a string of their size
  // consume(n) drops n buffered bytes; an emptied buffer starts again at
  // its front, and is freed if a burst grew it.
  void consume(std::size_t n) noexcept {
    rbeg += n;
    if (rbeg == rend) restart_empty();
  }
  // lend(n) consumes n buffered bytes and returns a view of them, which
  // stays valid until end_loan(): the buffer is neither moved nor emptied
  // meanwhile. end_loan() starts every read call while a view is out.
  std::string_view lend(std::size_t n) noexcept {
    if (n == 0) return {};
    std::string_view view(rdata(), n);
    rbeg += n;
    lent = true;
    return view;
  }
  void end_loan() {
    lent = false;
    if constexpr (kMoveAfterLoan) move_buffer();
    consume(0);  // emptied by the loan: back to the front
  }
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool kMoveAfterLoan = true;
#else
  static constexpr bool kMoveAfterLoan = false;
#endif
  // move_buffer() puts the unread bytes in a new block and frees the old one.
  void move_buffer();
  void restart_empty() noexcept;
  // fill() reads more into the buffer: the count (> 0), 0 at end of stream.
  // It drops what skip_line says is left of a refused line.
  std::size_t fill();
  // recv_into(buf, len) reads straight from the socket, past the (empty)
  // buffer: 0 at end of stream, or once this side closed the connection.
  std::size_t recv_into(void* buf, std::size_t len);
  // send_some(data) is one non-blocking send, through TLS when there is one.
  std::size_t send_some(std::string_view data);
  // start_tls(ctx, hostname, timeout) sends what is pending, then runs the
  // handshake over this connection; aborts the connection if it fails.
  void start_tls(const SslContext& ctx, const std::string& hostname, double timeout);

  // Write side.
  std::size_t pending() const noexcept { return wbuf.size() - wbeg; }
  void write(std::string_view data);
  // flush_now() sends what write() coalesced, in one send; what the kernel
  // does not take now goes on in the background sender.
  void flush_now() noexcept;
  void flush_in_background();
  void lose(std::exception_ptr e);
  void wake_drainers();
  void close(bool abort);
  void finish_close() noexcept;

  // The members every read and write touches come first, packed into
  // three cache lines: with hundreds of connections each round trip finds
  // them cold, and each line is a miss (docs/performance.md).

  // The read buffer: rcap bytes, not value-initialised, allocated on the
  // first fill (16 KiB) and grown only when a refill would have little room;
  // freed when it empties after growing past 64 KiB.
  std::unique_ptr<char[]> rbuf;
  std::size_t rcap = 0;
  std::size_t rbeg = 0, rend = 0;
  std::unique_ptr<TlsChannel> tls;  // null: plain
  bool eof = false;
  // skip_line: readline() refused a line longer than the limit before its
  // newline arrived; fill() drops the rest of it, through the newline.
  bool skip_line = false;
  // reading: a task is inside a StreamReader call, so (the call suspended)
  // waiting for data; a second task's read is refused meanwhile.
  bool reading = false;
  // lent: a view into the buffer is out (lend()); see end_loan().
  bool lent = false;
  bool flushing = false;
  bool eof_requested = false;
  bool closing = false;
  bool closed = false;
  bool aborted = false;  // closed by abort(): no close_notify
  std::size_t wbeg = 0;
  std::string wbuf;
  StreamOptions opt;
  std::exception_ptr error;
  // Queued on the thread while write() holds coalesced bytes: they go at the
  // writing task's next wait, yield or end (or the iteration's end), and
  // `keep` holds the connection until then, so dropping the writer first
  // loses nothing.
  struct CoalescedFlush : fiberloop::detail::PendingFlush {
    std::shared_ptr<Connection> keep;
  } coalesced;
  Socket sock;  // its hot members first, its peer's address last

  TaskOptions flush_task;  // its name, made on the first flush: later flushes reuse it
  std::vector<Future<void>> drain_waiters;
  std::vector<Future<void>> close_waiters;
  std::function<void(Connection*)> on_closed;  // the server's bookkeeping
};

// need(c) is the connection behind a StreamReader / StreamWriter handle.
inline Connection& need(const std::shared_ptr<Connection>& c) {
  if (!c) throw InvalidStateError("operation on an empty StreamReader/StreamWriter");
  return *c;
}

}  // namespace fiberloop::net::detail
