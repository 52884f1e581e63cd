// lib/net/connection.hpp: the state a StreamReader / StreamWriter pair shares (private).
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fiberloop/event_loop.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/net/socket.hpp"
#include "fiberloop/net/streams.hpp"

namespace fiberloop::net::detail {

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
  const char* rdata() const noexcept { return rbuf.data() + rbeg; }
  std::string take(std::size_t n);
  std::size_t fill();  // reads more; 0 at end of stream

  // Write side.
  std::size_t pending() const noexcept { return wbuf.size() - wbeg; }
  void write(std::string_view data);
  void flush_in_background();
  void lose(std::exception_ptr e);
  void wake_drainers();
  void close(bool abort);
  void finish_close() noexcept;

  Socket sock;
  StreamOptions opt;
  std::vector<char> rbuf;
  std::size_t rbeg = 0, rend = 0;
  bool eof = false;
  // reading: a task is inside a StreamReader call, so (the call suspended)
  // waiting for data; a second task's read is refused meanwhile.
  bool reading = false;

  std::string wbuf;
  std::size_t wbeg = 0;
  bool flushing = false;
  TaskOptions flush_task;  // its name, made on the first flush: later flushes reuse it
  bool eof_requested = false;
  bool closing = false;
  bool closed = false;
  std::exception_ptr error;
  std::vector<Future<void>> drain_waiters;
  std::vector<Future<void>> close_waiters;
  std::function<void(Connection*)> on_closed;  // the server's bookkeeping
};

}  // namespace fiberloop::net::detail
