#include "fiberloop/poller.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <system_error>

namespace fiberloop {
namespace {

std::uint32_t to_epoll(std::uint32_t mask) {
  return ((mask & Poller::kReadable) ? EPOLLIN : 0u) | ((mask & Poller::kWritable) ? EPOLLOUT : 0u);
}

bool has_pwait2 = true;  // cleared on the first ENOSYS; every loop sees the same kernel

}  // namespace

Poller::Poller() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

Poller::~Poller() { ::close(epfd_); }

void Poller::set_interest(int fd, std::uint32_t before, std::uint32_t after) {
  if (before == after) return;
  epoll_event ev{};
  ev.events = to_epoll(after);
  ev.data.fd = fd;
  int op = before == 0 ? EPOLL_CTL_ADD : after == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (::epoll_ctl(epfd_, op, fd, &ev) != 0) {
    throw std::system_error(errno, std::generic_category(),
                            "epoll_ctl on fd " + std::to_string(fd));
  }
}

int Poller::wait(std::int64_t timeout_ns, std::span<Event> out) {
  constexpr int kMaxBatch = 256;
  epoll_event events[kMaxBatch];
  int max = static_cast<int>(out.size() < kMaxBatch ? out.size() : kMaxBatch);
  int n = -1;
  if (has_pwait2) {
    timespec ts{timeout_ns / 1'000'000'000, timeout_ns % 1'000'000'000};
    n = ::epoll_pwait2(epfd_, events, max, timeout_ns < 0 ? nullptr : &ts, nullptr);
    if (n < 0 && errno == ENOSYS) has_pwait2 = false;
  }
  if (!has_pwait2) {
    int ms = timeout_ns < 0 ? -1 : static_cast<int>((timeout_ns + 999'999) / 1'000'000);
    n = ::epoll_wait(epfd_, events, max, ms);
  }
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw std::system_error(errno, std::generic_category(), "epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    std::uint32_t e = events[i].events;
    std::uint32_t ready = 0;
    // asyncio's selectors: anything but plain IN wakes writers, anything but
    // plain OUT wakes readers; errors and hang-ups so wake both.
    if (e & ~static_cast<std::uint32_t>(EPOLLOUT)) ready |= kReadable;
    if (e & ~static_cast<std::uint32_t>(EPOLLIN)) ready |= kWritable;
    out[i] = Event{events[i].data.fd, ready};
  }
  return n;
}

}  // namespace fiberloop
