// detail/syscall_counts.hpp: per-thread counts of the library's own system calls.
#pragma once

#include <cstdint>

#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// SyscallCounts counts the library's own system calls on this thread, so
// tests can hold the hot paths to what a hand-written epoll loop pays.
struct SyscallCounts {
  std::uint64_t polls = 0;   // epoll_wait / epoll_pwait2
  std::uint64_t ctls = 0;    // epoll_ctl
  std::uint64_t reads = 0;   // recv / recvfrom / read / accept by the socket layer
  std::uint64_t writes = 0;  // send / sendto / write by the socket layer
  // eventfd writes that wake a loop for posts (call_soon_threadsafe,
  // completers, submit), counted on the posting thread: one per batch.
  std::uint64_t wakeups = 0;
  std::uint64_t total() const noexcept { return polls + ctls + reads + writes + wakeups; }
};
// syscall_counts() is this thread's counters (reset them by assignment).
FIBERLOOP_API SyscallCounts& syscall_counts() noexcept;

}  // namespace fiberloop::detail
