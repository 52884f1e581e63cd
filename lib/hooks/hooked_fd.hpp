// hooked_fd.hpp: how a hooked call on an fd decides to wait, and the two
// loops every read-like and write-like hook is made of.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <optional>

#include "fd_table.hpp"
#include "loop_wait.hpp"

namespace fiberloop::hooks {

// Kind: how a call on the fd is made. `pass`: straight to libc (no task,
// a regular file, an fd the user made non-blocking, an unknown fd);
// `socket`: with MSG_DONTWAIT, waiting on EAGAIN; `stream` (a pipe, FIFO or
// tty, whose O_NONBLOCK the hooks never touch: it is shared with every
// process holding the file): libc's blocking call, made once a poll says
// it will not block.
enum class Kind { pass, socket, stream };

inline Kind kind_of(int fd) noexcept {
  FdTable& table = FdTable::instance();
  std::uint8_t bits = table.get(fd);
  if (!(bits & kKnown)) {
    if (!in_task()) return Kind::pass;
    bits = table.classify(fd);
  } else if ((bits & (kSocket | kStream)) && !(bits & kUserNonblock) && !in_task()) {
    return Kind::pass;
  }
  if (!(bits & kKnown) || (bits & kUserNonblock)) return Kind::pass;
  if (bits & kSocket) return Kind::socket;
  return bits & kStream ? Kind::stream : Kind::pass;
}

// socket_timeout(fd, receiving) is SO_RCVTIMEO / SO_SNDTIMEO, nullopt for none.
std::optional<double> socket_timeout(int fd, bool receiving) noexcept;

// receive_once(fd, kind, op): op() is the receive; the first result that is
// not EAGAIN (socket) or that follows readiness (stream) is returned.
// -1 with errno EAGAIN past SO_RCVTIMEO, ECANCELED if the task is cancelled.
template <class Op>
ssize_t receive_once(int fd, Kind kind, Op op) noexcept {
  Deadline deadline;
  bool timed = false;
  for (;;) {
    if (kind == Kind::socket || ready_now(fd, POLLIN)) {
      ssize_t n = op();
      if (n >= 0) {
        spend_budget();
        return n;
      }
      if (kind == Kind::stream || errno != EAGAIN) return n;
    }
    if (!timed) {
      deadline = Deadline::after(kind == Kind::socket ? socket_timeout(fd, true) : std::nullopt);
      timed = true;
    }
    if (wait_one(fd, POLLIN, deadline) != Outcome::ready) return -1;
  }
}

// send_all(fd, kind, len, op): op(done) sends what is left after `done`
// bytes (a stream's: at most PIPE_BUF, which a writable pipe takes without
// blocking); it repeats until all `len` are sent, as a blocking send does.
// An error or timeout after some bytes returns their count.
template <class Op>
ssize_t send_all(int fd, Kind kind, std::size_t len, Op op) noexcept {
  std::size_t done = 0;
  Deadline deadline;
  bool timed = false;
  for (;;) {
    if (kind == Kind::socket || ready_now(fd, POLLOUT)) {
      ssize_t n = op(done);
      if (n > 0 || (n == 0 && done >= len)) {
        done += static_cast<std::size_t>(n);
        if (done >= len) {
          spend_budget();
          return static_cast<ssize_t>(done);
        }
        continue;
      }
      if (n == 0 || kind == Kind::stream || errno != EAGAIN)
        return done ? static_cast<ssize_t>(done) : n;
    }
    if (!timed) {
      deadline = Deadline::after(kind == Kind::socket ? socket_timeout(fd, false) : std::nullopt);
      timed = true;
    }
    if (wait_one(fd, POLLOUT, deadline) != Outcome::ready)
      return done ? static_cast<ssize_t>(done) : -1;
  }
}

}  // namespace fiberloop::hooks
