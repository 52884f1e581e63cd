// fd_helpers.hpp: owned file descriptors and pipes for the I/O test suites.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <utility>

// Fd owns a file descriptor: every test closes what it opens.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct Pair {
  Fd r, w;  // for a socketpair both ends read and write
};

// make_pipe() is a non-blocking, close-on-exec pipe.
inline Pair make_pipe() {
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
  return {Fd(p[0]), Fd(p[1])};
}
