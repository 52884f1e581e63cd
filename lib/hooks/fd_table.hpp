// fd_table.hpp: what the hooks remember of each fd number, so that the
// common call costs one load: the kind of file (only sockets, pipes, FIFOs
// and ttys are waited for on the loop), whether the user made it
// non-blocking, whether the loop holds a registration for it.
#pragma once

#include <atomic>
#include <cstdint>

namespace fiberloop::hooks {

enum FdBits : std::uint8_t {
  kKnown = 1,          // classified: the bits below are set
  kSocket = 2,         // waited for; the call is made with MSG_DONTWAIT
  kStream = 4,         // a pipe, FIFO or tty: waited for, then called once ready
  kUserNonblock = 8,   // O_NONBLOCK as the user set it: the call passes through
  kRegistered = 16,    // the running loop watches the fd (forget_fd() before close)
  kHasTimeouts = 32,   // SO_RCVTIMEO / SO_SNDTIMEO were set through setsockopt()
};

// FdTable is one byte per fd number below kMaxFd, zero (unknown) until a
// hook classifies it inside a task. Numbers at or above kMaxFd are never
// hooked: their calls pass straight to libc. The bytes are atomics: any
// thread may close or dup a number while a task uses another. The memory is
// reserved when a byte is first set; until then every number reads unknown.
class FdTable {
 public:
  static constexpr int kMaxFd = 1 << 20;  // Debian's default hard RLIMIT_NOFILE

  // Constant-initialised, so usable before any constructor has run.
  constexpr FdTable() noexcept = default;
  FdTable(const FdTable&) = delete;
  FdTable& operator=(const FdTable&) = delete;

  // Inline, and no function-local static: every hooked call asks.
  static FdTable& instance() noexcept;

  std::uint8_t get(int fd) const noexcept {
    if (!in_range(fd)) return kKnown;
    std::atomic<std::uint8_t>* bits = bits_.load(std::memory_order_acquire);
    return bits ? bits[fd].load(std::memory_order_relaxed) : 0;
  }
  // classify(fd) fills in fd's bits from fstat(2) and fcntl(F_GETFL).
  std::uint8_t classify(int fd) noexcept;
  void set(int fd, std::uint8_t bits) noexcept {
    if (in_range(fd)) reserved()[fd].fetch_or(bits, std::memory_order_relaxed);
  }
  // Clearing needs no memory: a table never reserved holds no bits.
  void clear(int fd, std::uint8_t bits) noexcept {
    std::atomic<std::uint8_t>* all = bits_.load(std::memory_order_acquire);
    if (all && in_range(fd)) all[fd].fetch_and(static_cast<std::uint8_t>(~bits), std::memory_order_relaxed);
  }
  // forget(fd): the number is closed; its next file starts unknown.
  void forget(int fd) noexcept {
    std::atomic<std::uint8_t>* all = bits_.load(std::memory_order_acquire);
    if (all && in_range(fd)) all[fd].store(0, std::memory_order_relaxed);
  }
  // copy(from, to): `to` is a dup of `from` (they share the file and its
  // O_NONBLOCK), but no loop registration.
  void copy(int from, int to) noexcept {
    if (!in_range(to)) return;
    std::uint8_t bits = in_range(from) ? get(from) : 0;
    bits = static_cast<std::uint8_t>(bits & ~kRegistered);
    if (bits == 0) {
      forget(to);
    } else {
      reserved()[to].store(bits, std::memory_order_relaxed);
    }
  }
  // set_user_nonblock(fd, on): fcntl(F_SETFL) or ioctl(FIONBIO) succeeded.
  void set_user_nonblock(int fd, bool on) noexcept {
    if (on) {
      set(fd, kUserNonblock);
    } else {
      clear(fd, kUserNonblock);
    }
  }

 private:
  static bool in_range(int fd) noexcept {
    return static_cast<unsigned>(fd) < static_cast<unsigned>(kMaxFd);
  }
  std::atomic<std::uint8_t>* reserved() noexcept {
    std::atomic<std::uint8_t>* bits = bits_.load(std::memory_order_acquire);
    return bits ? bits : reserve();
  }
  std::atomic<std::uint8_t>* reserve() noexcept;

  std::atomic<std::atomic<std::uint8_t>*> bits_{nullptr};
};

extern FdTable fd_table;
inline FdTable& FdTable::instance() noexcept { return fd_table; }

}  // namespace fiberloop::hooks
