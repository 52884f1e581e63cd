// hooks_op_count.cpp: what the hooks add to a read that does not wait.
// Built twice from this file (test/bench/meson.build): hooks_op_count_plain,
// linked with fiberloop alone, and hooks_op_count_hooked (FIBERLOOP_HOOKED),
// linked with libfiberloop-hooks; hooks_op_count.sh runs both under
// callgrind and prints the difference. Each operation reads one byte that
// is already there, N times, callgrind counting only those reads (the
// writes that put the bytes there are not counted), as op_count.cpp does:
//   valgrind --tool=callgrind --collect-atstart=no hooks_op_count_X OP N
// Each run also prints the wall time per read, outside valgrind the figure
// to read: "OP N ns_per_op T".
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <valgrind/callgrind.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fiberloop/fiberloop.hpp>
#include <string>
#include <string_view>

#ifdef FIBERLOOP_HOOKED
#include <fiberloop/hooks.hpp>
#endif

namespace {

constexpr long kBatch = 1000;  // bytes written at once, then read one by one
constexpr long kWarmupBatches = 2;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::abort();
}

// The files read. A non-blocking pipe is what fiberloop's own fds are (the
// hooks pass its calls straight through); the blocking ones are what C
// code makes, which the hooks make wait on the loop inside a task.
enum class File { nonblocking_pipe, blocking_pipe, blocking_socket };

struct Ends {
  int reader = -1, writer = -1;
  explicit Ends(File file) {
    int fds[2];
    bool ok = file == File::blocking_socket
                  ? ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0
                  : ::pipe2(fds, O_CLOEXEC) == 0;
    if (!ok) die("pipe/socketpair");
    reader = fds[0];
    writer = fds[1];
    if (file == File::nonblocking_pipe && ::fcntl(reader, F_SETFL, O_NONBLOCK) != 0) die("fcntl");
  }
  ~Ends() {
    ::close(reader);
    ::close(writer);
  }
};

ssize_t by_read(int fd, char* byte) { return ::read(fd, byte, 1); }
ssize_t by_recv(int fd, char* byte) { return ::recv(fd, byte, 1, 0); }

// reads(file, call, n) reads n bytes one call at a time, counting only
// the calls; the wall time per call, in nanoseconds.
double reads(File file, ssize_t (*call)(int, char*), long n) {
  Ends ends(file);
  char block[kBatch];
  std::memset(block, 'x', sizeof block);
  double seconds = 0;
  auto batch = [&](bool counted) {
    if (::write(ends.writer, block, sizeof block) != static_cast<ssize_t>(sizeof block)) die("write");
    char byte;
    auto t0 = std::chrono::steady_clock::now();
    if (counted) CALLGRIND_TOGGLE_COLLECT;
    for (long i = 0; i < kBatch; ++i) {
      if (call(ends.reader, &byte) != 1) die("read");
    }
    if (counted) CALLGRIND_TOGGLE_COLLECT;
    if (counted) seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (long i = 0; i < kWarmupBatches; ++i) batch(false);
  for (long done = 0; done < n; done += kBatch) batch(true);
  return seconds * 1e9 / static_cast<double>(n);
}

// in_a_task(fn) runs fn as a task's body: the hooks' waiting path is open.
template <class Fn>
double in_a_task(Fn fn) {
  fiberloop::EventLoop loop;
  return loop.run_until_complete([&] { return fn(); });
}

struct Op {
  const char* name;
  File file;
  ssize_t (*call)(int, char*);
  bool task;
};

const Op kOps[] = {
    {"read_nonblocking_pipe_in_task", File::nonblocking_pipe, by_read, true},
    {"read_blocking_pipe_in_task", File::blocking_pipe, by_read, true},
    {"read_blocking_socket_in_task", File::blocking_socket, by_read, true},
    {"recv_blocking_socket_in_task", File::blocking_socket, by_recv, true},
    {"read_nonblocking_pipe_outside", File::nonblocking_pipe, by_read, false},
    {"read_blocking_pipe_outside", File::blocking_pipe, by_read, false},
    {"read_blocking_socket_outside", File::blocking_socket, by_read, false},
    {"recv_blocking_socket_outside", File::blocking_socket, by_recv, false},
};

// linked_as_built() checks that the build is the one its name says: the
// hooked one has the hooks in effect, the plain one has none loaded.
bool linked_as_built() {
#ifdef FIBERLOOP_HOOKED
  if (fiberloop::hooks::status().in_effect) return true;
  std::fprintf(stderr, "hooks_op_count: the hooks are linked but not in effect\n");
  return false;
#else
  if (::dlsym(RTLD_DEFAULT, "fiberloop_hooks_linked") == nullptr) return true;
  std::fprintf(stderr, "hooks_op_count: the plain build has the hooks loaded (LD_PRELOAD?)\n");
  return false;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const Op& op : kOps) std::printf("%s\n", op.name);
    return 0;
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: hooks_op_count OP N | hooks_op_count --list\n");
    return 2;
  }
  long n = std::strtol(argv[2], nullptr, 10);
  if (n <= 0 || n % kBatch != 0) {
    std::fprintf(stderr, "hooks_op_count: N must be a positive multiple of %ld\n", kBatch);
    return 2;
  }
  if (!linked_as_built()) return 1;
  for (const Op& op : kOps) {
    if (std::string_view(op.name) != argv[1]) continue;
    auto run = [&] { return reads(op.file, op.call, n); };
    double ns = op.task ? in_a_task(run) : run();
    std::printf("%s %ld ns_per_op %.1f\n", op.name, n, ns);
    return 0;
  }
  std::fprintf(stderr, "hooks_op_count: unknown operation '%s' (see --list)\n", argv[1]);
  return 2;
}
