// poller.hpp: the readiness backend under the loop.
#pragma once

#include <cstdint>
#include <span>

#include "fiberloop/export.hpp"

namespace fiberloop {

// Poller waits for file descriptors to become readable or writable. It is
// epoll, level-triggered (as asyncio's selectors); the loop speaks only this
// narrow interface, which leaves room for another backend.
class FIBERLOOP_API Poller {
 public:
  static constexpr std::uint32_t kReadable = 1;
  static constexpr std::uint32_t kWritable = 2;

  struct Event {
    int fd;
    std::uint32_t ready;  // kReadable | kWritable; errors and hang-ups set both
  };

  // Poller() opens the epoll instance (close-on-exec). Throws std::system_error.
  Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;
  ~Poller();

  // set_interest(fd, before, after) moves fd's registration from the `before`
  // mask to the `after` mask (0 means unregistered). Throws std::system_error
  // naming epoll_ctl; nothing changes then.
  void set_interest(int fd, std::uint32_t before, std::uint32_t after);

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
