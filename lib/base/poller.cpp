#include "fiberloop/poller.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <string>
#include <system_error>

#include "fiberloop/detail/syscall_counts.hpp"

namespace fiberloop {
namespace {

std::uint32_t to_epoll(std::uint32_t mask) {
  return ((mask & Poller::kReadable) ? EPOLLIN : 0u) |
         ((mask & Poller::kWritable) ? EPOLLOUT : 0u) |
         ((mask & Poller::kEdge) ? static_cast<std::uint32_t>(EPOLLET) | EPOLLRDHUP : 0u);
}

bool has_pwait2 = true;  // cleared on the first ENOSYS; every loop sees the same kernel

}  // namespace

Poller::Poller() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

Poller::~Poller() { ::close(epfd_); }

void Poller::watch(int fd, std::uint32_t mask, bool known, std::uint32_t tag) {
  epoll_event ev{};
  ev.events = to_epoll(mask);
  ev.data.u64 = (static_cast<std::uint64_t>(tag) << 32) | static_cast<std::uint32_t>(fd);
  int op = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  ++detail::syscall_counts().ctls;
  if (::epoll_ctl(epfd_, op, fd, &ev) == 0) return;
  if ((op == EPOLL_CTL_MOD && errno == ENOENT) || (op == EPOLL_CTL_ADD && errno == EEXIST)) {
    op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    ++detail::syscall_counts().ctls;
    if (::epoll_ctl(epfd_, op, fd, &ev) == 0) return;
  }
  throw std::system_error(errno, std::generic_category(), "epoll_ctl on fd " + std::to_string(fd));
}

int Poller::unwatch(int fd) noexcept {
  epoll_event ev{};  // kernels before 2.6.9 want a non-null event even for DEL
  ++detail::syscall_counts().ctls;
  return ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev) == 0 ? 0 : errno;
}

void Poller::rebuild() {
  int fresh = ::epoll_create1(EPOLL_CLOEXEC);
  if (fresh < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  ::close(epfd_);
  epfd_ = fresh;
}

int Poller::wait(std::int64_t timeout_ns, std::span<Event> out) {
  constexpr int kMaxBatch = 256;
  epoll_event events[kMaxBatch];
  int max = static_cast<int>(out.size() < kMaxBatch ? out.size() : kMaxBatch);
  int n = -1;
  ++detail::syscall_counts().polls;
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
    if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ready |= kReadHangup;
    if (e & (EPOLLHUP | EPOLLERR)) ready |= kWriteHangup;
    std::uint64_t data = events[i].data.u64;
    out[i] =
        Event{static_cast<int>(data & 0xffffffffu), ready, static_cast<std::uint32_t>(data >> 32)};
  }
  return n;
}

}  // namespace fiberloop
