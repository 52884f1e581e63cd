// libc_calls.hpp: the libc functions the hooks stand in front of, found
// with dlsym(RTLD_NEXT): what a hook calls to do the real work.
#pragma once

#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <atomic>

namespace fiberloop::hooks {

struct LibcCalls {
  ssize_t (*read)(int, void*, size_t);
  ssize_t (*write)(int, const void*, size_t);
  ssize_t (*readv)(int, const iovec*, int);
  ssize_t (*writev)(int, const iovec*, int);
  ssize_t (*recv)(int, void*, size_t, int);
  ssize_t (*recvfrom)(int, void*, size_t, int, sockaddr*, socklen_t*);
  ssize_t (*recvmsg)(int, msghdr*, int);
  ssize_t (*send)(int, const void*, size_t, int);
  ssize_t (*sendto)(int, const void*, size_t, int, const sockaddr*, socklen_t);
  ssize_t (*sendmsg)(int, const msghdr*, int);
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*accept)(int, sockaddr*, socklen_t*);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  int (*poll)(pollfd*, nfds_t, int);
  int (*ppoll)(pollfd*, nfds_t, const timespec*, const sigset_t*);
  int (*select)(int, fd_set*, fd_set*, fd_set*, timeval*);
  int (*pselect)(int, fd_set*, fd_set*, fd_set*, const timespec*, const sigset_t*);
  int (*nanosleep)(const timespec*, timespec*);
  int (*clock_nanosleep)(clockid_t, int, const timespec*, timespec*);
  int (*usleep)(useconds_t);
  unsigned (*sleep)(unsigned);
  int (*getaddrinfo)(const char*, const char*, const addrinfo*, addrinfo**);
  int (*close)(int);
  int (*dup)(int);
  int (*dup2)(int, int);
  int (*dup3)(int, int, int);
  int (*fcntl)(int, int, ...);
  int (*fcntl64)(int, int, ...);
  int (*ioctl)(int, unsigned long, ...);
  int (*setsockopt)(int, int, int, const void*, socklen_t);
};

// libc() is the table, filled on first use (a hook may run before the
// library's constructors: another library's constructor can call read()).
// Aborts with a message naming the function if libc lacks one. Inline, and
// a flag rather than a function-local static: every hooked call, waiting or
// not, goes through here (docs/performance.md#the-hooks).
extern LibcCalls libc_table;
extern std::atomic<bool> libc_table_filled;
const LibcCalls& fill_libc_table() noexcept;
inline const LibcCalls& libc() noexcept {
  if (__builtin_expect(libc_table_filled.load(std::memory_order_acquire), true)) return libc_table;
  return fill_libc_table();
}

// The names of the hooked calls, for the start-up check (status.cpp).
extern const char* const kHookedNames[];
extern const int kHookedCount;

}  // namespace fiberloop::hooks
