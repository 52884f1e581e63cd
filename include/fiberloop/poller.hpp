// poller.hpp: the readiness backend under the loop.
#pragma once

#include <cstdint>
#include <span>

#include "fiberloop/export.hpp"

namespace fiberloop {

// Poller waits for file descriptors to become readable or writable. It is
// epoll, level-triggered (as asyncio's selectors) unless kEdge asks for
// edge-triggered readiness (the loop's readiness waits); the loop speaks only
// this narrow interface, which leaves room for another backend.
class FIBERLOOP_API Poller {
 public:
  static constexpr std::uint32_t kReadable = 1;
  static constexpr std::uint32_t kWritable = 2;
  static constexpr std::uint32_t kEdge = 4;  // edge-triggered; the peer's half-close counts as readable
  // In Event::ready: states that never end and bring no further edge.
  static constexpr std::uint32_t kReadHangup = 8;    // the peer half-closed, hung up, or an error
  static constexpr std::uint32_t kWriteHangup = 16;  // hung up both ways, or an error

  struct Event {
    int fd;
    std::uint32_t ready;  // kReadable | kWritable; errors and hang-ups set both
    std::uint32_t tag;    // the tag given to watch()
  };

  // Poller() opens the epoll instance (close-on-exec). Throws std::system_error.
  Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;
  ~Poller();

  // watch(fd, mask, known, tag) registers fd for `mask` (non-zero): a
  // modification if `known` (the caller believes epoll has fd), else an
  // addition. Either falls back to the other when the kernel disagrees
  // (MOD: ENOENT, the fd was closed and its number reused; ADD: EEXIST), so
  // the caller's table resynchronises with epoll. `tag` comes back in the
  // fd's events. Throws std::system_error naming epoll_ctl and the fd;
  // nothing changes then.
  void watch(int fd, std::uint32_t mask, bool known, std::uint32_t tag);

  // unwatch(fd) removes fd's registration: 0, or the errno of epoll_ctl
  // (EBADF: fd is closed; ENOENT: not registered).
  int unwatch(int fd) noexcept;

  // rebuild() replaces the epoll instance with an empty one: the only way to
  // drop a registration whose fd number no longer names its file (closed
  // while a dup keeps the file open). The caller registers its fds again.
  // Throws std::system_error (epoll_create1); the old instance stays then.
  void rebuild();

  // wait(timeout_ns, out) blocks until an fd is ready or timeout_ns passed
  // (-1: no timeout; 0: just look) and fills `out`. Returns the event count;
  // 0 after a signal interrupted the wait (the caller recomputes the timeout).
  // The timeout has nanosecond precision (epoll_pwait2); kernels without it
  // get milliseconds rounded up, so a timer never fires early.
  int wait(std::int64_t timeout_ns, std::span<Event> out);

 private:
  int epfd_;
};

}  // namespace fiberloop
