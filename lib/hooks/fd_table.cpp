// fd_table.cpp: the table's memory and the classification of an fd.
#include "fd_table.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "libc_calls.hpp"

namespace fiberloop::hooks {

constinit FdTable fd_table;

std::atomic<std::uint8_t>* FdTable::reserve() noexcept {
  // Reserved, not committed: a page becomes real when an fd in it is used.
  void* p = ::mmap(nullptr, kMaxFd, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (p == MAP_FAILED) {
    std::fputs("fiberloop-hooks: cannot reserve the fd table (mmap failed)\n", stderr);
    std::abort();
  }
  auto* mine = static_cast<std::atomic<std::uint8_t>*>(p);
  std::atomic<std::uint8_t>* theirs = nullptr;
  if (bits_.compare_exchange_strong(theirs, mine, std::memory_order_acq_rel)) return mine;
  ::munmap(p, kMaxFd);  // another thread reserved it first
  return theirs;
}

std::uint8_t FdTable::classify(int fd) noexcept {
  if (!in_range(fd)) return kKnown;
  struct stat st;
  if (::fstat(fd, &st) != 0) return 0;  // EBADF and the like: the call itself will say
  std::uint8_t bits = kKnown;
  if (S_ISSOCK(st.st_mode)) {
    bits |= kSocket;
  } else if (S_ISFIFO(st.st_mode) || (S_ISCHR(st.st_mode) && ::isatty(fd))) {
    bits |= kStream;
  }
  if (bits != kKnown) {
    int flags = libc().fcntl(fd, F_GETFL);
    if (flags < 0) return 0;
    if (flags & O_NONBLOCK) bits |= kUserNonblock;
  }
  // Keep bits set meanwhile by setsockopt() (kHasTimeouts).
  reserved()[fd].fetch_or(bits, std::memory_order_relaxed);
  return get(fd);
}

}  // namespace fiberloop::hooks
