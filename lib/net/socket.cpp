#include "fiberloop/net/socket.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string>
#include <system_error>

#include "fiberloop/await.hpp"
#include "receive_scratch.hpp"
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

// spend_budget(): each socket call counts against the task's cooperative
// budget, so that a peer that keeps a socket full cannot freeze the loop.
void spend_budget() { fiberloop::detail::spend_budget(); }

// pending_network_error(err): accept(2) on Linux passes a new connection's
// pending network error on as accept's own (ENETDOWN, EPROTO, ENOPROTOOPT,
// EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH; EPERM when a
// firewall rule refused it): that connection is gone, the listener is fine,
// and the man page says to retry as for EAGAIN.
bool pending_network_error(int err) {
  switch (err) {
    case ENETDOWN:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM:
      return true;
    default:
      return false;
  }
}

// ReceiveArea(max) is where a receive of up to max bytes goes: the thread's
// scratch, or for a larger max a buffer of its own (not zero-filled either,
// so only the pages written cost memory), freed once the bytes are copied out.
class ReceiveArea {
 public:
  explicit ReceiveArea(std::size_t max) {
    if (max > detail::kReceiveScratch) own_ = std::make_unique_for_overwrite<char[]>(max);
  }
  char* data() { return own_ ? own_.get() : detail::receive_scratch(); }

 private:
  std::unique_ptr<char[]> own_;
};

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
    registration_ = std::exchange(o.registration_, {});
  }
  return *this;
}

void Socket::close() noexcept {
  if (fd_ < 0) return;
  if (loop_ && loop_->core) loop_->core->owner().forget_fd(fd_);
  loop_.reset();
  registration_.reset();
  ::close(fd_);
  fd_ = -1;
  read_drained_ = false;
}

void Socket::wait(std::uint32_t kind) {
  EventLoop& loop = get_running_loop();
  if (loop_.get() != loop.link().get()) {
    // Moving to another loop: the old one must let go of the fd first.
    if (loop_ && loop_->core) loop_->core->owner().forget_fd(fd_);
    loop_ = loop.link();
    registration_.reset();
  }
  loop.wait_io(fd_, kind, std::source_location::current(), &registration_);
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

int Socket::getsockopt(int level, int name) const {
  check_open(*this, "getsockopt");
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd_, level, name, &value, &len) != 0) fail(errno, "getsockopt", *this);
  return value;
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

ssize_t Socket::recv_now(void* buf, std::size_t len) {
  if (read_drained_) {
    // The last read was short: the kernel buffer was empty, so wait first
    // instead of paying for a recv that would say EAGAIN.
    read_drained_ = false;
    errno = EAGAIN;
    return -1;
  }
  for (;;) {
    ++fiberloop::detail::syscall_counts().reads;
    ssize_t n = ::recv(fd_, buf, len, 0);
    if (n >= 0) {
      auto got = static_cast<std::size_t>(n);
      // Only a stream's short read says the buffer is empty (a datagram
      // is short by nature; 0 is the end, which stays readable).
      if (got > 0 && got < len && type_ == SOCK_STREAM) read_drained_ = true;
      return n;
    }
    if (errno == EINTR) continue;
    if (!would_block(errno)) fail(errno, "sock_recv", *this, "from");
    return -1;
  }
}

std::size_t sock_recv_into(Socket& s, void* buf, std::size_t len) {
  check_open(s, "sock_recv");
  spend_budget();
  for (;;) {
    ssize_t n = s.recv_now(buf, len);
    if (n >= 0) return static_cast<std::size_t>(n);
    s.wait(Poller::kReadable);
  }
}

std::string sock_recv(Socket& s, std::size_t max) {
  check_open(s, "sock_recv");
  spend_budget();
  // A stream may return less than asked anyway: it reads at most the
  // scratch's 256 KiB per call (as asyncio's transports do), with no buffer
  // of its own. A datagram or record socket gets the whole max.
  if (s.type() == SOCK_STREAM) max = std::min(max, detail::kReceiveScratch);
  ReceiveArea area(max);
  for (;;) {
    ssize_t n = s.recv_now(area.data(), max);
    if (n >= 0) return std::string(area.data(), static_cast<std::size_t>(n));
    s.wait(Poller::kReadable);
  }
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
  spend_budget();
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

char* detail::receive_scratch() {
  thread_local std::unique_ptr<char[]> area(new char[kReceiveScratch]);
  return area.get();
}

detail::Accept4Function& detail::accept4_function() noexcept {
  static thread_local Accept4Function fn = nullptr;
  return fn;
}

std::pair<Socket, Address> sock_accept(Socket& s) {
  check_open(s, "sock_accept");
  spend_budget();
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ++fiberloop::detail::syscall_counts().reads;
    detail::Accept4Function accept_fn = detail::accept4_function();
    int fd = (accept_fn ? accept_fn : ::accept4)(s.fd_, reinterpret_cast<sockaddr*>(&ss), &len,
                                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Socket conn;
      conn.fd_ = fd;
      conn.family_ = s.family_;
      conn.type_ = s.type_;
      Address peer(reinterpret_cast<sockaddr*>(&ss), len);
      conn.peer_ = peer;
      return {std::move(conn), peer};
    }
    if (errno == EINTR || errno == ECONNABORTED || pending_network_error(errno)) continue;
    if (!would_block(errno)) fail(errno, "sock_accept", s);
    s.wait(Poller::kReadable);
  }
}

std::size_t sock_sendto(Socket& s, std::string_view data, const Address& address) {
  check_open(s, "sock_sendto");
  spend_budget();
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
  spend_budget();
  ReceiveArea area(max);
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ++fiberloop::detail::syscall_counts().reads;
    ssize_t n = ::recvfrom(s.fd(), area.data(), max, 0, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n >= 0) {
      return {std::string(area.data(), static_cast<std::size_t>(n)),
              Address(reinterpret_cast<sockaddr*>(&ss), len)};
    }
    if (errno == EINTR) continue;
    if (!would_block(errno)) fail(errno, "sock_recvfrom", s, "from");
    s.wait(Poller::kReadable);
  }
}

}  // namespace fiberloop::net
