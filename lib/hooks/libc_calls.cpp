// libc_calls.cpp: resolving the real libc functions behind the hooks.
#include "libc_calls.hpp"

#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace fiberloop::hooks {
namespace {

template <class F>
void next(F& slot, const char* name) noexcept {
  void* p = ::dlsym(RTLD_NEXT, name);
  if (!p) {
    // No stdio: this may run before anything else is set up.
    const char* head = "fiberloop-hooks: libc has no ";
    (void)!::syscall(SYS_write, STDERR_FILENO, head, std::strlen(head));
    (void)!::syscall(SYS_write, STDERR_FILENO, name, std::strlen(name));
    (void)!::syscall(SYS_write, STDERR_FILENO, "\n", 1);
    std::abort();
  }
  slot = reinterpret_cast<F>(p);
}

LibcCalls resolve() noexcept {
  LibcCalls c{};
  next(c.read, "read");
  next(c.write, "write");
  next(c.readv, "readv");
  next(c.writev, "writev");
  next(c.recv, "recv");
  next(c.recvfrom, "recvfrom");
  next(c.recvmsg, "recvmsg");
  next(c.send, "send");
  next(c.sendto, "sendto");
  next(c.sendmsg, "sendmsg");
  next(c.connect, "connect");
  next(c.accept, "accept");
  next(c.accept4, "accept4");
  next(c.poll, "poll");
  next(c.ppoll, "ppoll");
  next(c.select, "select");
  next(c.pselect, "pselect");
  next(c.nanosleep, "nanosleep");
  next(c.clock_nanosleep, "clock_nanosleep");
  next(c.usleep, "usleep");
  next(c.sleep, "sleep");
  next(c.getaddrinfo, "getaddrinfo");
  next(c.close, "close");
  next(c.dup, "dup");
  next(c.dup2, "dup2");
  next(c.dup3, "dup3");
  next(c.fcntl, "fcntl");
  next(c.fcntl64, "fcntl64");
  next(c.ioctl, "ioctl");
  next(c.setsockopt, "setsockopt");
  return c;
}

}  // namespace

LibcCalls libc_table{};
std::atomic<bool> libc_table_filled{false};

const LibcCalls& fill_libc_table() noexcept {
  // The guard makes racing first calls from several threads fill it once;
  // the flag, set after, is what the inline libc() reads from then on.
  static const bool filled = [] {
    libc_table = resolve();
    libc_table_filled.store(true, std::memory_order_release);
    return true;
  }();
  (void)filled;
  return libc_table;
}

const char* const kHookedNames[] = {
    "read",     "write",     "readv",   "writev",  "recv",      "recvfrom",        "recvmsg",
    "send",     "sendto",    "sendmsg", "connect", "accept",    "accept4",         "poll",
    "ppoll",    "select",    "pselect", "nanosleep", "clock_nanosleep", "usleep", "sleep",
    "getaddrinfo", "close",  "dup",     "dup2",    "dup3",      "fcntl",           "fcntl64",
    "ioctl",    "setsockopt",
};
const int kHookedCount = sizeof kHookedNames / sizeof kHookedNames[0];

}  // namespace fiberloop::hooks
