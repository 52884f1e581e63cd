// create_subprocess_exec / _shell: posix_spawn with the child's stdio wired up.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "fiberloop/await.hpp"
#include "fiberloop/detail/child_watcher.hpp"
#include "fiberloop/detail/signal_handlers.hpp"
#include "fiberloop/subprocess.hpp"

extern char** environ;

namespace fiberloop {
namespace {

constexpr const char* kWho = "create_subprocess_exec()";

[[noreturn]] void fail(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), std::string(kWho) + ": " + what);
}

void check(int rc, const char* call) {
  if (rc != 0) fail(rc, call);
}

// Spawn holds posix_spawn's two descriptions for one call.
struct Spawn {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  Spawn() {
    check(::posix_spawn_file_actions_init(&actions), "posix_spawn_file_actions_init");
    if (int rc = ::posix_spawnattr_init(&attr)) {
      ::posix_spawn_file_actions_destroy(&actions);
      fail(rc, "posix_spawnattr_init");
    }
  }
  ~Spawn() {
    ::posix_spawnattr_destroy(&attr);
    ::posix_spawn_file_actions_destroy(&actions);
  }
  Spawn(const Spawn&) = delete;
  Spawn& operator=(const Spawn&) = delete;
};

// ChildEnd is the child's end of a stdio socket pair (or a from_fd copy):
// the parent closes it once the child has its copy.
struct ChildEnd {
  int fd = -1;
  ~ChildEnd() {
    if (fd >= 0) ::close(fd);
  }
};

void check_text(const std::string& s, const char* what) {
  if (s.find('\0') != std::string::npos) {
    throw std::invalid_argument(std::string(kWho) + ": " + what + " holds a NUL byte");
  }
}

std::vector<std::string> environment(const SubprocessOptions& options) {
  std::vector<std::string> env;
  if (!options.env) {
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    return env;
  }
  for (const auto& [name, value] : *options.env) {
    if (name.empty() || name.find('=') != std::string::npos) {
      throw std::invalid_argument(std::string(kWho) + ": environment name '" + name +
                                  "' is empty or holds '='");
    }
    check_text(name, "an environment name");
    check_text(value, "an environment value");
    env.push_back(name + "=" + value);
  }
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> p;
  p.reserve(strings.size() + 1);
  for (std::string& s : strings) p.push_back(s.data());
  p.push_back(nullptr);
  return p;
}

// wire(spawn, target, stdio, ours, theirs) sets up the child's fd `target`.
void wire(Spawn& spawn, int target, const Stdio& stdio, net::Socket& ours, ChildEnd& theirs) {
  switch (stdio.kind()) {
    case Stdio::Kind::inherit:
      return;
    case Stdio::Kind::pipe: {
      // A stream socket pair, as libuv's: our end is a net::Socket, and the
      // streams over it are the loop's, with no pipe-specific code path.
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail(errno, "socketpair");
      theirs.fd = sv[1];
      ours = net::Socket::adopt(sv[0]);
      check(::posix_spawn_file_actions_adddup2(&spawn.actions, sv[1], target), "adddup2");
      return;
    }
    case Stdio::Kind::devnull:
      check(::posix_spawn_file_actions_addopen(&spawn.actions, target, "/dev/null",
                                               target == 0 ? O_RDONLY : O_WRONLY, 0),
            "addopen");
      return;
    case Stdio::Kind::fd: {
      if (stdio.fd() < 0) {
        throw std::invalid_argument(std::string(kWho) + ": Stdio::from_fd(" +
                                    std::to_string(stdio.fd()) + ") is not an fd");
      }
      // The child's 0, 1, 2 are set up in turn: a source among them may be
      // the child's new fd by then (out = pipe(), err = from_fd(1) would
      // send stderr into the pipe). A copy above 2 is ours whatever came
      // before; it is close-on-exec here, closed after the spawn.
      int source = stdio.fd();
      if (source < 3 && source != target) {
        source = ::fcntl(source, F_DUPFD_CLOEXEC, 3);
        if (source < 0) fail(errno, "Stdio::from_fd(" + std::to_string(stdio.fd()) + ")");
        theirs.fd = source;
      }
      // adddup2 of an fd onto itself clears its close-on-exec (glibc 2.29+).
      check(::posix_spawn_file_actions_adddup2(&spawn.actions, source, target), "adddup2");
      return;
    }
    case Stdio::Kind::to_stdout:
      if (target != 2) {
        throw std::invalid_argument(std::string(kWho) + ": Stdio::to_stdout() is for err only");
      }
      check(::posix_spawn_file_actions_adddup2(&spawn.actions, 1, 2), "adddup2");
      return;
  }
}

void set_signals(Spawn& spawn, EventLoop& loop, const SubprocessOptions& options) {
  sigset_t none, defaults;
  ::sigemptyset(&none);
  defaults = none;
  if (detail::SignalHandlers* handlers = detail::SignalHandlers::find(loop)) {
    defaults = handlers->handled();
  }
  ::sigaddset(&defaults, SIGPIPE);  // servers ignore it; a child expects its default, as Python's
  check(::posix_spawnattr_setsigmask(&spawn.attr, &none), "setsigmask");
  check(::posix_spawnattr_setsigdefault(&spawn.attr, &defaults), "setsigdefault");
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.new_session && options.process_group) {
    throw std::invalid_argument(std::string(kWho) +
                                ": new_session and process_group exclude each other");
  }
  if (options.new_session) flags |= POSIX_SPAWN_SETSID;
  if (options.process_group) {
    if (*options.process_group < 0) {
      throw std::invalid_argument(std::string(kWho) + ": process_group " +
                                  std::to_string(*options.process_group) + " is negative");
    }
    flags |= POSIX_SPAWN_SETPGROUP;
    check(::posix_spawnattr_setpgroup(&spawn.attr, *options.process_group), "setpgroup");
  }
  check(::posix_spawnattr_setflags(&spawn.attr, flags), "setflags");
}

}  // namespace

Process create_subprocess_exec(std::vector<std::string> argv, SubprocessOptions options) {
  if (argv.empty()) throw std::invalid_argument(std::string(kWho) + ": argv is empty");
  for (const std::string& arg : argv) check_text(arg, "an argument");
  if (options.cwd) check_text(*options.cwd, "cwd");
  EventLoop& loop = get_running_loop();
  std::vector<std::string> env = environment(options);

  Spawn spawn;
  net::Socket ours[3];
  ChildEnd theirs[3];
  const Stdio* stdio[3] = {&options.in, &options.out, &options.err};
  for (int i = 0; i < 3; ++i) wire(spawn, i, *stdio[i], ours[i], theirs[i]);
  if (options.close_fds) {
    check(::posix_spawn_file_actions_addclosefrom_np(&spawn.actions, 3), "addclosefrom");
  }
  if (options.cwd) {
    check(::posix_spawn_file_actions_addchdir_np(&spawn.actions, options.cwd->c_str()),
          "addchdir");
  }

  detail::ChildWatcher& watcher = detail::ChildWatcher::of(loop);
  watcher.before_spawn();
  set_signals(spawn, loop, options);  // after before_spawn(): SIGCHLD may be the loop's now

  std::vector<char*> argp = pointers(argv);
  std::vector<char*> envp = pointers(env);
  pid_t pid = -1;
  // glibc's posix_spawn waits for the exec and returns its errno: a program
  // that is missing or not executable fails here, in the parent.
  if (int rc = ::posix_spawnp(&pid, argv[0].c_str(), &spawn.actions, &spawn.attr, argp.data(),
                              envp.data())) {
    std::string what = "cannot run '" + argv[0] + "'";
    if (options.cwd) what += " in '" + *options.cwd + "'";
    fail(rc, what);
  }

  auto child = std::make_shared<detail::ChildState>(loop, pid);
  watcher.watch(child);
  try {
    if (ours[0]) child->in = net::open_streams(std::move(ours[0]), options.streams).second;
    if (ours[1]) child->out = net::open_streams(std::move(ours[1]), options.streams).first;
    if (ours[2]) child->err = net::open_streams(std::move(ours[2]), options.streams).first;
  } catch (...) {
    ::kill(pid, SIGKILL);  // a child nobody can talk to: the watcher reaps it
    throw;
  }
  return Process(std::move(child));
}

Process create_subprocess_shell(std::string cmd, SubprocessOptions options) {
  return create_subprocess_exec({"/bin/sh", "-c", std::move(cmd)}, std::move(options));
}

}  // namespace fiberloop
