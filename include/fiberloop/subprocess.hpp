// subprocess.hpp: child processes with streams, asyncio's create_subprocess_exec/_shell.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fiberloop/export.hpp"
#include "fiberloop/net/streams.hpp"

namespace fiberloop {

namespace detail {
struct ChildState;
}

// Stdio says what one of a child's standard streams is connected to.
class FIBERLOOP_API Stdio {
 public:
  enum class Kind { inherit, pipe, devnull, fd, to_stdout };
  // inherit(): the parent's own stream (the default, as asyncio's None).
  static Stdio inherit() noexcept { return Stdio(Kind::inherit, -1); }
  // pipe(): a stream the parent reads or writes through the Process.
  static Stdio pipe() noexcept { return Stdio(Kind::pipe, -1); }
  // devnull(): /dev/null.
  static Stdio devnull() noexcept { return Stdio(Kind::devnull, -1); }
  // from_fd(fd): an open fd of the parent's (it stays the parent's).
  static Stdio from_fd(int fd) noexcept { return Stdio(Kind::fd, fd); }
  // to_stdout(): for stderr only, wherever stdout goes (asyncio's STDOUT).
  static Stdio to_stdout() noexcept { return Stdio(Kind::to_stdout, -1); }

  Kind kind() const noexcept { return kind_; }
  int fd() const noexcept { return fd_; }

 private:
  Stdio(Kind kind, int fd) noexcept : kind_(kind), fd_(fd) {}
  Kind kind_;
  int fd_;
};

// SubprocessOptions are how a child starts (asyncio's keyword arguments).
struct SubprocessOptions {
  Stdio in = Stdio::inherit();
  Stdio out = Stdio::inherit();
  Stdio err = Stdio::inherit();
  // cwd: the child's working directory (a relative program path is looked
  // up from it, as Python's subprocess does); the parent's if unset.
  std::optional<std::string> cwd = std::nullopt;
  // env: the child's whole environment; the parent's if unset.
  std::optional<std::map<std::string, std::string>> env = std::nullopt;
  // close_fds: the child gets fds 0-2 only (Python's default). Without it
  // the child inherits the parent's fds that are not close-on-exec; every
  // fd fiberloop opens is close-on-exec either way.
  bool close_fds = true;
  // The piped streams' buffer bounds (StreamOptions::limit is readline's).
  net::StreamOptions streams = {};
};

// Process is a running or finished child, asyncio.subprocess.Process. A
// cheap handle: copies share the child. Dropping every copy early leaves the
// child running; the loop still reaps it when it exits (no zombie).
//
// The child's standard streams, when piped, are Unix stream sockets, as
// libuv's (Node.js): programs read and write them as pipes; one that
// open()s /dev/stdin or /proc/self/fd/N gets ENXIO, as with any socket.
//
// Example (inside a task):
//   auto p = fiberloop::create_subprocess_exec({"sort"}, {.in = fiberloop::Stdio::pipe(),
//                                                         .out = fiberloop::Stdio::pipe()});
//   auto [out, err] = p.communicate("b\na\n");   // out == "a\nb\n"
//   int status = p.wait();                       // 0
class FIBERLOOP_API Process {
 public:
  Process() = default;
  explicit Process(std::shared_ptr<detail::ChildState> state) noexcept;

  pid_t pid() const noexcept;
  // returncode(): the exit status once the child ended and was reaped; a
  // child killed by a signal is the signal's number, negated (-9 for
  // SIGKILL). 255 for a child someone else reaped (SIGCHLD set to SIG_IGN).
  std::optional<int> returncode() const noexcept;

  // The piped streams. Throw RuntimeError naming the stream if it is not a pipe.
  net::StreamWriter& stdin_writer();
  net::StreamReader& stdout_reader();
  net::StreamReader& stderr_reader();

  // wait() suspends the running task until the child ends; its returncode.
  // Cancelling the task leaves the child running (and still reaped).
  int wait();
  // communicate(input) writes input to stdin (if piped) and closes it,
  // reads stdout and stderr (those piped) to their end, and waits for the
  // child: (stdout, stderr), "" for one not piped. The three run at once,
  // so a child that writes much before reading all its input cannot
  // deadlock it. Throws RuntimeError for input with stdin not piped.
  // Cancelled, it stops reading and writing and leaves the child running.
  std::pair<std::string, std::string> communicate(std::string input = {});

  // send_signal(sig) signals the child; nothing once it was reaped (its pid
  // may name another process by then). terminate() is SIGTERM, kill() SIGKILL.
  // Throws std::system_error if kill(2) refuses.
  void send_signal(int sig);
  void terminate();
  void kill();

 private:
  detail::ChildState& state() const;
  std::shared_ptr<detail::ChildState> state_;
};

// create_subprocess_exec(argv, options) starts argv[0] (searched in PATH
// when it has no '/') with arguments argv, without a shell; call it on the
// loop's thread (in a task, or a callback). The child's signal mask is
// empty and the signals this loop handles, and SIGPIPE, have their default
// action in it. Throws std::invalid_argument for an empty argv, a NUL byte in
// an argument, an environment name that is empty or holds '=' or a NUL, or a
// Stdio that does not fit its stream (to_stdout() other than for err, a
// negative fd); std::system_error with the errno of the failure (ENOENT,
// EACCES, ENOTDIR...) naming the program and cwd when the child cannot be
// started, so a missing program is never a silent exit status 127;
// RuntimeError without a running loop.
FIBERLOOP_API Process create_subprocess_exec(std::vector<std::string> argv,
                                             SubprocessOptions options = {});
// create_subprocess_shell(cmd, options) is create_subprocess_exec({"/bin/sh",
// "-c", cmd}): a command the shell cannot find is the shell's exit status 127.
FIBERLOOP_API Process create_subprocess_shell(std::string cmd, SubprocessOptions options = {});

}  // namespace fiberloop
