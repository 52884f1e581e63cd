#include "fiberloop/net/socket.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "fiberloop/await.hpp"
#include "fiberloop/event_loop.hpp"

namespace fiberloop::net {
namespace {

[[noreturn]] void fail(int err, const char* call, const Socket& s, const char* dir = "with") {
  std::string what = call;
  if (s.peer().family() != AF_UNSPEC) {
    what += std::string(" ") + dir + " " + s.peer().to_string();
  } else {
    what += " on fd " + std::to_string(s.fd());
  }
  throw std::system_error(err, std::generic_category(), what);
}

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

void check_open(const Socket& s, const char* call) {
  if (!s)
    throw std::system_error(EBADF, std::generic_category(),
                            std::string(call) + " on a closed Socket");
}

}  // namespace

Socket::Socket(int family, int type, int protocol)
    : fd_(::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol)),
      family_(family),
      type_(type) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
}

Socket Socket::adopt(int fd) {
  Socket s;
  s.fd_ = fd;
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
      ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    throw std::system_error(errno, std::generic_category(),
                            "Socket::adopt: fcntl on fd " + std::to_string(fd));
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) s.family_ = ss.ss_family;
  len = sizeof s.type_;
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &s.type_, &len);
  return s;
}

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    family_ = o.family_;
    type_ = o.type_;
    read_drained_ = std::exchange(o.read_drained_, false);
    peer_ = o.peer_;
    loop_ = std::move(o.loop_);
  }
  return *this;
}

void Socket::close() noexcept {
  if (fd_ < 0) return;
  if (loop_ && loop_->loop) loop_->loop->forget_fd(fd_);
  loop_.reset();
  ::close(fd_);
  fd_ = -1;
  read_drained_ = false;
}

void Socket::wait(std::uint32_t kind) {
  EventLoop& loop = get_running_loop();
  if (loop_.get() != loop.link().get()) {
    // Moving to another loop: the old one must let go of the fd first.
    if (loop_ && loop_->loop) loop_->loop->forget_fd(fd_);
    loop_ = loop.link();
  }
  if (kind == Poller::kReadable) {
    loop.wait_readable(fd_);
  } else {
    loop.wait_writable(fd_);
  }
}

void Socket::bind(const Address& address) {
  check_open(*this, "bind");
  if (::bind(fd_, address.data(), address.size()) != 0)
    throw std::system_error(errno, std::generic_category(), "bind to " + address.to_string());
}

void Socket::listen(int backlog) {
  check_open(*this, "listen");
  if (::listen(fd_, backlog) != 0)
    throw std::system_error(errno, std::generic_category(), "listen on fd " + std::to_string(fd_));
}

void Socket::shutdown(int how) {
  check_open(*this, "shutdown");
  if (::shutdown(fd_, how) != 0) fail(errno, "shutdown", *this);
}

void Socket::setsockopt(int level, int name, int value) {
  check_open(*this, "setsockopt");
  if (::setsockopt(fd_, level, name, &value, sizeof value) != 0) fail(errno, "setsockopt", *this);
}

Address Socket::getsockname() const {
  check_open(*this, "getsockname");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    fail(errno, "getsockname", *this);
  return Address(reinterpret_cast<sockaddr*>(&ss), len);
}

Address Socket::getpeername() const {
  check_open(*this, "getpeername");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    fail(errno, "getpeername", *this);
  return Address(reinterpret_cast<sockaddr*>(&ss), len);
}

std::size_t sock_recv_into(Socket& s, void* buf, std::size_t len) {
  check_open(s, "sock_recv");
  for (;;) {
    if (!s.read_drained_) {
      ++fiberloop::detail::syscall_counts().reads;
      ssize_t n = ::recv(s.fd_, buf, len, 0);
      if (n >= 0) {
        auto got = static_cast<std::size_t>(n);
        // Only a stream's short read says the buffer is empty (a datagram
        // is short by nature; 0 is the end, which stays readable).
        if (got > 0 && got < len && s.type_ == SOCK_STREAM) s.read_drained_ = true;
        return got;
      }
      if (errno == EINTR) continue;
      if (!would_block(errno)) fail(errno, "sock_recv", s, "from");
    }
    s.read_drained_ = false;
    s.wait(Poller::kReadable);
  }
}

std::string sock_recv(Socket& s, std::size_t max) {
  std::string data(max, '\0');
  data.resize(sock_recv_into(s, data.data(), max));
  return data;
}

std::size_t try_send(Socket& s, std::string_view data) {
  check_open(s, "sock_sendall");
  for (;;) {
    ++fiberloop::detail::syscall_counts().writes;
    ssize_t n = ::send(s.fd(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (would_block(errno)) return 0;
    fail(errno, "sock_sendall", s, "to");
  }
}

void sock_sendall(Socket& s, std::string_view data) {
  while (!data.empty()) {
    std::size_t n = try_send(s, data);
    data.remove_prefix(n);
    if (n == 0) s.wait(Poller::kWritable);
  }
}

void sock_connect(Socket& s, const Address& address) {
  check_open(s, "sock_connect");
  s.peer_ = address;
  if (::connect(s.fd_, address.data(), address.size()) == 0) return;
  if (errno != EINPROGRESS && errno != EINTR) fail(errno, "sock_connect", s, "to");
  for (;;) {
    s.wait(Poller::kWritable);
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(s.fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0) {
      // Writability reports the end of the connect; a spurious report (an
      // edge kept from before) leaves it still in progress.
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      if (::getpeername(s.fd_, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) return;
      if (errno != ENOTCONN) fail(errno, "sock_connect", s, "to");
      continue;
    }
    fail(err, "sock_connect", s, "to");
  }
}

std::pair<Socket, Address> sock_accept(Socket& s) {
  check_open(s, "sock_accept");
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ++fiberloop::detail::syscall_counts().reads;
    int fd = ::accept4(s.fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Socket conn;
      conn.fd_ = fd;
      conn.family_ = s.family_;
      conn.type_ = s.type_;
      Address peer(reinterpret_cast<sockaddr*>(&ss), len);
      conn.peer_ = peer;
      return {std::move(conn), peer};
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (!would_block(errno)) fail(errno, "sock_accept", s);
    s.wait(Poller::kReadable);
  }
}

std::size_t sock_sendto(Socket& s, std::string_view data, const Address& address) {
  check_open(s, "sock_sendto");
  for (;;) {
    ++fiberloop::detail::syscall_counts().writes;
    ssize_t n =
        ::sendto(s.fd(), data.data(), data.size(), MSG_NOSIGNAL, address.data(), address.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (!would_block(errno)) {
      throw std::system_error(errno, std::generic_category(),
                              "sock_sendto to " + address.to_string());
    }
    s.wait(Poller::kWritable);
  }
}

std::pair<std::string, Address> sock_recvfrom(Socket& s, std::size_t max) {
  check_open(s, "sock_recvfrom");
  std::string data(max, '\0');
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ++fiberloop::detail::syscall_counts().reads;
    ssize_t n = ::recvfrom(s.fd(), data.data(), max, 0, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n >= 0) {
      data.resize(static_cast<std::size_t>(n));
      return {std::move(data), Address(reinterpret_cast<sockaddr*>(&ss), len)};
    }
    if (errno == EINTR) continue;
    if (!would_block(errno)) fail(errno, "sock_recvfrom", s, "from");
    s.wait(Poller::kReadable);
  }
}

}  // namespace fiberloop::net
