// io_hooks.cpp: read, write and the socket calls. Inside a task, on a
// blocking socket, pipe or tty, they wait on the loop; otherwise they are
// libc's own.
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "hooked_fd.hpp"
#include "libc_calls.hpp"

#define HOOK extern "C" __attribute__((visibility("default")))

namespace fiberloop::hooks {

std::optional<double> socket_timeout(int fd, bool receiving) noexcept {
  if (!(FdTable::instance().get(fd) & kHasTimeouts)) return std::nullopt;
  timeval tv{};
  socklen_t len = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, receiving ? SO_RCVTIMEO : SO_SNDTIMEO, &tv, &len) != 0)
    return std::nullopt;
  if (tv.tv_sec == 0 && tv.tv_usec == 0) return std::nullopt;
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

namespace {

// The iovecs left after `done` bytes of iov[0..count) (a partial send).
std::vector<iovec> rest_of(const iovec* iov, int count, std::size_t done) {
  std::vector<iovec> rest;
  for (int i = 0; i < count; ++i) {
    if (done >= iov[i].iov_len) {
      done -= iov[i].iov_len;
      continue;
    }
    rest.push_back({static_cast<char*>(iov[i].iov_base) + done, iov[i].iov_len - done});
    done = 0;
  }
  return rest;
}

std::size_t total(const iovec* iov, int count) {
  std::size_t sum = 0;
  for (int i = 0; i < count; ++i) sum += iov[i].iov_len;
  return sum;
}

// write_chunk(fd, iov, count, done): a stream's next write after `done`
// bytes, at most PIPE_BUF of them.
ssize_t write_chunk(int fd, const iovec* iov, int count, std::size_t done) {
  for (int i = 0; i < count; ++i) {
    if (done >= iov[i].iov_len) {
      done -= iov[i].iov_len;
      continue;
    }
    std::size_t n = std::min<std::size_t>(iov[i].iov_len - done, PIPE_BUF);
    return libc().write(fd, static_cast<const char*>(iov[i].iov_base) + done, n);
  }
  return 0;
}

ssize_t sendmsg_all(int fd, const msghdr* msg, int flags) {
  std::size_t len = total(msg->msg_iov, static_cast<int>(msg->msg_iovlen));
  return send_all(fd, Kind::socket, len, [&](std::size_t done) -> ssize_t {
    if (done == 0) return libc().sendmsg(fd, msg, flags | MSG_DONTWAIT);
    // The ancillary data went with the first bytes.
    std::vector<iovec> rest = rest_of(msg->msg_iov, static_cast<int>(msg->msg_iovlen), done);
    msghdr more{};
    more.msg_iov = rest.data();
    more.msg_iovlen = rest.size();
    return libc().sendmsg(fd, &more, flags | MSG_DONTWAIT);
  });
}

bool waits(int flags) { return !(flags & MSG_DONTWAIT); }

}  // namespace
}  // namespace fiberloop::hooks

using namespace fiberloop::hooks;

HOOK ssize_t read(int fd, void* buf, size_t n) {
  switch (kind_of(fd)) {
    case Kind::socket:
      return receive_once(fd, Kind::socket, [&] { return libc().recv(fd, buf, n, MSG_DONTWAIT); });
    case Kind::stream:
      return receive_once(fd, Kind::stream, [&] { return libc().read(fd, buf, n); });
    case Kind::pass:
      break;
  }
  return libc().read(fd, buf, n);
}

HOOK ssize_t write(int fd, const void* buf, size_t n) {
  Kind kind = kind_of(fd);
  if (kind == Kind::pass) return libc().write(fd, buf, n);
  const char* bytes = static_cast<const char*>(buf);
  return send_all(fd, kind, n, [&](std::size_t done) -> ssize_t {
    if (kind == Kind::socket) return libc().send(fd, bytes + done, n - done, MSG_DONTWAIT);
    return libc().write(fd, bytes + done, std::min<std::size_t>(n - done, PIPE_BUF));
  });
}

HOOK ssize_t readv(int fd, const iovec* iov, int count) {
  switch (kind_of(fd)) {
    case Kind::socket:
      return receive_once(fd, Kind::socket, [&] {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov);
        msg.msg_iovlen = static_cast<std::size_t>(count);
        return libc().recvmsg(fd, &msg, MSG_DONTWAIT);
      });
    case Kind::stream:
      return receive_once(fd, Kind::stream, [&] { return libc().readv(fd, iov, count); });
    case Kind::pass:
      break;
  }
  return libc().readv(fd, iov, count);
}

HOOK ssize_t writev(int fd, const iovec* iov, int count) {
  Kind kind = kind_of(fd);
  if (kind == Kind::pass || count < 0 || count > IOV_MAX) return libc().writev(fd, iov, count);
  if (kind == Kind::socket) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<std::size_t>(count);
    return sendmsg_all(fd, &msg, 0);
  }
  std::size_t len = total(iov, count);
  if (len <= PIPE_BUF) {  // atomic on a pipe, as the caller may rely on
    return send_all(fd, kind, len, [&](std::size_t done) -> ssize_t {
      if (done == 0) return libc().writev(fd, iov, count);
      return write_chunk(fd, iov, count, done);
    });
  }
  return send_all(fd, kind, len, [&](std::size_t done) { return write_chunk(fd, iov, count, done); });
}

HOOK ssize_t recv(int fd, void* buf, size_t n, int flags) {
  if (!waits(flags) || kind_of(fd) != Kind::socket) return libc().recv(fd, buf, n, flags);
  if (!(flags & MSG_WAITALL))
    return receive_once(fd, Kind::socket, [&] { return libc().recv(fd, buf, n, flags | MSG_DONTWAIT); });
  // MSG_WAITALL: until n bytes, the end of the stream, or an error.
  std::size_t got = 0;
  char* bytes = static_cast<char*>(buf);
  while (got < n) {
    ssize_t r = receive_once(fd, Kind::socket, [&] {
      return libc().recv(fd, bytes + got, n - got, (flags & ~MSG_WAITALL) | MSG_DONTWAIT);
    });
    if (r < 0) return got ? static_cast<ssize_t>(got) : r;
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

HOOK ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* len) {
  if (!waits(flags) || kind_of(fd) != Kind::socket)
    return libc().recvfrom(fd, buf, n, flags, from, len);
  return receive_once(fd, Kind::socket,
                      [&] { return libc().recvfrom(fd, buf, n, flags | MSG_DONTWAIT, from, len); });
}

HOOK ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if (!waits(flags) || kind_of(fd) != Kind::socket) return libc().recvmsg(fd, msg, flags);
  return receive_once(fd, Kind::socket, [&] { return libc().recvmsg(fd, msg, flags | MSG_DONTWAIT); });
}

HOOK ssize_t send(int fd, const void* buf, size_t n, int flags) {
  if (!waits(flags) || kind_of(fd) != Kind::socket) return libc().send(fd, buf, n, flags);
  const char* bytes = static_cast<const char*>(buf);
  return send_all(fd, Kind::socket, n, [&](std::size_t done) {
    return libc().send(fd, bytes + done, n - done, flags | MSG_DONTWAIT);
  });
}

HOOK ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to,
                    socklen_t len) {
  if (!waits(flags) || kind_of(fd) != Kind::socket) return libc().sendto(fd, buf, n, flags, to, len);
  const char* bytes = static_cast<const char*>(buf);
  return send_all(fd, Kind::socket, n, [&](std::size_t done) {
    return libc().sendto(fd, bytes + done, n - done, flags | MSG_DONTWAIT, to, len);
  });
}

HOOK ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if (!waits(flags) || kind_of(fd) != Kind::socket || msg == nullptr)
    return libc().sendmsg(fd, msg, flags);
  return sendmsg_all(fd, msg, flags);
}

HOOK int connect(int fd, const sockaddr* to, socklen_t len) {
  if (kind_of(fd) != Kind::socket) return libc().connect(fd, to, len);
  // A connect cannot be made non-blocking by a flag of its own: O_NONBLOCK
  // is set for the call only (a socket being connected is this process's).
  int flags = libc().fcntl(fd, F_GETFL);
  if (flags < 0 || libc().fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return libc().connect(fd, to, len);
  int r = libc().connect(fd, to, len);
  int error = errno;
  libc().fcntl(fd, F_SETFL, flags);
  if (r == 0) return 0;
  // A Unix socket whose listener's backlog is full says EAGAIN: try again soon.
  while (error == EAGAIN && to && to->sa_family == AF_UNIX) {
    if (sleep_for(0.001) != Outcome::ready) return -1;
    libc().fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    r = libc().connect(fd, to, len);
    error = errno;
    libc().fcntl(fd, F_SETFL, flags);
    if (r == 0) return 0;
  }
  if (error != EINPROGRESS) {
    errno = error;
    return -1;
  }
  Outcome outcome = wait_one(fd, POLLOUT, Deadline::after(socket_timeout(fd, false)));
  if (outcome == Outcome::timed_out) errno = EINPROGRESS;  // Linux's blocking connect past SO_SNDTIMEO
  if (outcome != Outcome::ready) return -1;
  int so_error = 0;
  socklen_t so_len = sizeof so_error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) != 0) return -1;
  if (so_error != 0) {
    errno = so_error;
    return -1;
  }
  return 0;
}

HOOK int accept4(int fd, sockaddr* from, socklen_t* len, int flags) {
  if (kind_of(fd) != Kind::socket) {
    int r = libc().accept4(fd, from, len, flags);
    FdTable::instance().forget(r);  // a new file: what the number held before is gone
    return r;
  }
  // A listening socket may be shared with other processes (a pre-forked
  // server): its O_NONBLOCK is left alone, so accept once a poll says a
  // connection waits (another process may take it first: then this blocks).
  Deadline deadline = Deadline::after(socket_timeout(fd, true));
  for (;;) {
    if (ready_now(fd, POLLIN)) {
      int r = libc().accept4(fd, from, len, flags);
      if (r >= 0) {
        FdTable::instance().forget(r);
        spend_budget();
      }
      return r;
    }
    if (wait_one(fd, POLLIN, deadline) != Outcome::ready) return -1;
  }
}

HOOK int accept(int fd, sockaddr* from, socklen_t* len) {
  if (kind_of(fd) != Kind::socket) {
    int r = libc().accept(fd, from, len);
    FdTable::instance().forget(r);
    return r;
  }
  return accept4(fd, from, len, 0);
}
