// fd_hooks.cpp: the calls that change what an fd number is — close, the
// dups, fcntl's F_SETFL and ioctl's FIONBIO, the socket timeouts — kept in
// the fd table so that the I/O hooks know each number's file.

// With 64-bit offsets asked for (meson's default), <fcntl.h> renames fcntl
// to fcntl64 at the assembly level: the two hooks below must keep their names.
#undef _FILE_OFFSET_BITS
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdarg>

#include "fd_table.hpp"
#include "libc_calls.hpp"
#include "loop_wait.hpp"

#define HOOK extern "C" __attribute__((visibility("default")))

namespace fiberloop::hooks {
namespace {

// replaced(fd): the number is about to be closed (or dup2'ed over).
void replaced(int fd) {
  forget_registration(fd);
  FdTable::instance().forget(fd);
}

// dup_replaces(from, to): whether a dup2/dup3 of `from` onto `to` will
// close what `to` holds. Asked before the call, since the loop's watch of
// `to` must go while it still names its old file; a `from` that is not
// open fails the call and leaves `to`, and any task waiting on it, alone.
bool dup_replaces(int from, int to) { return from != to && libc().fcntl(from, F_GETFD) >= 0; }

// after_fcntl(fd, cmd, arg, result): what a successful fcntl changed.
int after_fcntl(int fd, int cmd, long arg, int result) {
  if (result < 0) return result;
  switch (cmd) {
    case F_SETFL:
      FdTable::instance().set_user_nonblock(fd, arg & O_NONBLOCK);
      break;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      FdTable::instance().copy(fd, result);
      break;
    default:
      break;
  }
  return result;
}

// fcntl's third argument, of whichever type cmd takes: read as a pointer-
// sized word, as glibc's own fcntl does.
long third_argument(va_list& args) { return reinterpret_cast<long>(va_arg(args, void*)); }

}  // namespace
}  // namespace fiberloop::hooks

using namespace fiberloop::hooks;

HOOK int close(int fd) {
  replaced(fd);
  return libc().close(fd);
}

HOOK int dup(int fd) {
  int r = libc().dup(fd);
  if (r >= 0) FdTable::instance().copy(fd, r);
  return r;
}

HOOK int dup2(int from, int to) {
  if (dup_replaces(from, to)) replaced(to);
  int r = libc().dup2(from, to);
  if (r >= 0 && from != to) FdTable::instance().copy(from, r);
  return r;
}

HOOK int dup3(int from, int to, int flags) {
  if ((flags & ~O_CLOEXEC) == 0 && dup_replaces(from, to)) replaced(to);  // else EINVAL
  int r = libc().dup3(from, to, flags);
  if (r >= 0) FdTable::instance().copy(from, r);
  return r;
}

HOOK int fcntl(int fd, int cmd, ...) {
  va_list args;
  va_start(args, cmd);
  long arg = third_argument(args);
  va_end(args);
  return after_fcntl(fd, cmd, arg, libc().fcntl(fd, cmd, arg));
}

HOOK int fcntl64(int fd, int cmd, ...) {
  va_list args;
  va_start(args, cmd);
  long arg = third_argument(args);
  va_end(args);
  return after_fcntl(fd, cmd, arg, libc().fcntl64(fd, cmd, arg));
}

HOOK int ioctl(int fd, unsigned long request, ...) {
  va_list args;
  va_start(args, request);
  void* arg = va_arg(args, void*);
  va_end(args);
  int r = libc().ioctl(fd, request, arg);
  if (r == 0 && request == FIONBIO && arg) FdTable::instance().set_user_nonblock(fd, *static_cast<int*>(arg) != 0);
  return r;
}

HOOK int setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  int r = libc().setsockopt(fd, level, name, value, len);
  if (r == 0 && level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO))
    FdTable::instance().set(fd, kHasTimeouts);
  return r;
}
