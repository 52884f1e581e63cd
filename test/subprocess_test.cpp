// create_subprocess_exec / _shell and Process (subprocess.hpp), after
// CPython's test_asyncio/test_subprocess.py. test/meson.build runs this
// suite twice: with the child watcher the kernel allows (pidfd) and with
// FIBERLOOP_CHILD_WATCHER=sigchld; the first case checks which one runs.
//
// Every wait is bounded: run()'s loop-time limit, and with_timeout() around
// each wait for a child. Children are exec'd directly or through `exec` in
// the shell wherever they are killed, so that no grandchild outlives them.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fiberloop/detail/child_watcher.hpp>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::Process;
using fiberloop::RuntimeError;
using fiberloop::Stdio;
using fiberloop::SubprocessOptions;
using fiberloop::TimeoutError;
using fiberloop::create_subprocess_exec;
using fiberloop::create_subprocess_shell;
using fiberloop::detail::ChildWatcher;
using namespace std::string_literals;

// returncode() in assertion messages.
namespace boost::test_tools::tt_detail {
template <>
struct print_log_value<std::optional<int>> {
  void operator()(std::ostream& os, const std::optional<int>& v) {
    if (v) {
      os << *v;
    } else {
      os << "nullopt";
    }
  }
};
}  // namespace boost::test_tools::tt_detail

namespace {

// read_text(path) is a whole (small) file, "" if it cannot be opened.
std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// stat_fields(pid) are the fields of /proc/<pid>/stat after the command
// name: [0] is the state letter, [1] the parent's pid. Empty if gone.
std::vector<std::string> stat_fields(pid_t pid) {
  std::string s = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close = s.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream in(s.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  return fields;
}

// proc_state(pid) is the process's state letter ('S', 'R', 'Z'...), 0 once
// it is gone (reaped).
char proc_state(pid_t pid) {
  auto fields = stat_fields(pid);
  return fields.empty() ? 0 : fields[0][0];
}

// running(pid): the child exists and is not a zombie.
bool running(pid_t pid) {
  char state = proc_state(pid);
  return ::kill(pid, 0) == 0 && state != 0 && state != 'Z' && state != 'X';
}

// reaped(pid): the loop reaped the child (it is no child of ours any more).
// A child still running, or a zombie nobody reaped, is not (the zombie is
// reaped here then, and the check fails).
bool reaped(pid_t pid) {
  int status = 0;
  errno = 0;
  return ::waitpid(pid, &status, WNOHANG) < 0 && errno == ECHILD;
}

// children_of(parent): every process whose parent is `parent`.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> found;
  DIR* proc = ::opendir("/proc");
  if (!proc) return found;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    auto fields = stat_fields(static_cast<pid_t>(pid));
    if (fields.size() > 1 && fields[1] == std::to_string(parent)) {
      found.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(proc);
  return found;
}

// open_fds() is this process's open fds, each with its link target.
std::map<int, std::string> open_fds() {
  std::map<int, std::string> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  BOOST_REQUIRE(dir);
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd == ::dirfd(dir)) continue;
    char target[4096];
    ssize_t n = ::readlink(("/proc/self/fd/"s + e->d_name).c_str(), target, sizeof target);
    fds[fd] = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
  }
  ::closedir(dir);
  return fds;
}

bool cloexec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

// wait_bounded(p) is p.wait(), failing with TimeoutError after `limit` s.
int wait_bounded(Process& p, double limit = 5.0) {
  return fiberloop::with_timeout(limit, [&] { return p.wait(); });
}

// ok_child() proves the loop can still start and reap a child.
void ok_child() {
  Process p = create_subprocess_exec({"true"});
  BOOST_TEST(wait_bounded(p) == 0);
}

// The bytes of the big transfers, and their FNV-1a checksum.
std::string pattern_bytes(std::size_t offset, std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = pattern(offset + i);
  return s;
}
constexpr std::uint64_t kFnvBasis = 1469598103934665603ull;
std::uint64_t fnv1a(std::uint64_t h, std::string_view data) {
  for (unsigned char c : data) h = (h ^ c) * 1099511628211ull;
  return h;
}

constexpr std::size_t kBig = 16u << 20;  // 16 MiB

// TempDir is a directory removed with everything in it.
struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/fiberloop-subprocess-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(name));
    path = name;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text, mode_t mode) {
    std::string file = path + "/" + name;
    std::ofstream(file) << text;
    BOOST_REQUIRE(::chmod(file.c_str(), mode) == 0);
    return file;
  }
};

// Pipe is a pipe(2), both ends close-on-exec, closed at the end.
struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    BOOST_REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    close_w();
    if (r >= 0) ::close(r);
  }
  void close_w() {
    if (w >= 0) ::close(w);
    w = -1;
  }
  // drain(): what is in the pipe, once every writer end is closed.
  std::string drain() {
    std::string s;
    char buf[4096];
    for (ssize_t n; (n = ::read(r, buf, sizeof buf)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      s.append(buf, static_cast<std::size_t>(n));
    }
    return s;
  }
};

// Redirected puts another fd at one of this process's standard fds for
// its lifetime (to see what an inheriting child writes there).
struct Redirected {
  int target, saved;
  Redirected(int target_fd, int with) : target(target_fd) {
    std::fflush(nullptr);
    saved = ::fcntl(target, F_DUPFD_CLOEXEC, 3);
    BOOST_REQUIRE(saved >= 0);
    BOOST_REQUIRE(::dup2(with, target) == target);
  }
  ~Redirected() {
    ::dup2(saved, target);
    ::close(saved);
  }
};

// sigmask_field(pid, "SigBlk") is that mask of /proc/<pid>/status.
std::uint64_t sigmask_field(pid_t pid, const std::string& name) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + ":", 0) == 0) return std::stoull(line.substr(name.size() + 1), nullptr, 16);
  }
  BOOST_FAIL("no " << name << " in /proc/" << pid << "/status");
  return 0;
}
constexpr std::uint64_t bit(int sig) { return std::uint64_t{1} << (sig - 1); }

// NoStrayChildren checks, once every test has run, that no child of this
// process is left: each test's children were reaped, by the loop or by the
// test. A stray is listed, killed and reaped, and fails the run.
struct NoStrayChildren {
  void setup() {}
  void teardown() {
    std::vector<pid_t> strays = children_of(::getpid());
    for (pid_t pid : strays) {
      std::string comm = read_text("/proc/" + std::to_string(pid) + "/comm");
      if (!comm.empty() && comm.back() == '\n') comm.pop_back();
      std::fprintf(stderr, "subprocess_test: stray child %d (%s, state %c) after the suite\n",
                   static_cast<int>(pid), comm.c_str(), proc_state(pid));
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::fflush(stderr);
    // Boost.Test counts it: the run fails (exit status 201).
    if (!strays.empty()) BOOST_ERROR(strays.size() << " child process(es) outlived the suite");
  }
};

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(NoStrayChildren);

BOOST_FIXTURE_TEST_SUITE(subprocess, LoopFixture)

// The suite's second registration must really run the SIGCHLD path: it
// passes "-- --expect-watcher=sigchld" beside the variable, so losing the
// variable fails here instead of testing the pidfd path twice.
BOOST_AUTO_TEST_CASE(the_child_watcher_runs_in_the_mode_asked_for) {
  const char* forced = std::getenv("FIBERLOOP_CHILD_WATCHER");
  auto& master = boost::unit_test::framework::master_test_suite();
  for (int i = 1; i < master.argc; ++i) {
    std::string arg = master.argv[i];
    if (arg.rfind("--expect-watcher=", 0) == 0) {
      BOOST_REQUIRE_MESSAGE(forced && arg.substr(17) == forced,
                            arg << " but FIBERLOOP_CHILD_WATCHER=" << (forced ? forced : "(unset)"));
    }
  }
  bool want_pidfd;
  if (forced) {
    BOOST_REQUIRE_MESSAGE(forced == "pidfd"s || forced == "sigchld"s,
                          "FIBERLOOP_CHILD_WATCHER=" << forced);
    want_pidfd = forced == "pidfd"s;
  } else {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
    want_pidfd = fd >= 0;
    if (fd >= 0) ::close(fd);
  }
  BOOST_TEST_MESSAGE("child watcher: " << (want_pidfd ? "pidfd" : "sigchld"));
  BOOST_TEST(ChildWatcher::uses_pidfd() == want_pidfd);
  run([&] {
    Process p = create_subprocess_exec({"sleep", "30"});
    int pidfds = 0, signalfds = 0;
    for (const auto& [fd, target] : open_fds()) {
      pidfds += target == "anon_inode:[pidfd]";
      signalfds += target == "anon_inode:[signalfd]";
    }
    sigset_t mask;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    if (want_pidfd) {
      BOOST_TEST(pidfds == 1);  // the child's
    } else {
      BOOST_TEST(pidfds == 0);
      BOOST_TEST(signalfds == 1);
      BOOST_TEST(::sigismember(&mask, SIGCHLD) == 1);  // taken by the signalfd
    }
    p.kill();
    BOOST_TEST(wait_bounded(p) == -SIGKILL);
  });
}

BOOST_AUTO_TEST_CASE(exec_with_a_stdout_pipe_returncode_and_wait) {
  run([] {
    // The child waits for its input: returncode() is unset until then.
    Process p = create_subprocess_exec({"sh", "-c", "read x; echo \"hello $x\"; exit 3"},
                                       {.in = Stdio::pipe(), .out = Stdio::pipe()});
    BOOST_TEST(p.pid() > 0);
    BOOST_TEST(!p.returncode().has_value());
    BOOST_CHECK_THROW(p.stderr_reader(), RuntimeError);  // not piped
    fiberloop::sleep(0.02);
    BOOST_TEST(!p.returncode().has_value());
    p.stdin_writer().write("world\n");
    p.stdin_writer().close();
    BOOST_TEST(p.stdout_reader().read() == "hello world\n");
    BOOST_TEST(wait_bounded(p) == 3);
    BOOST_TEST(p.returncode() == 3);
    BOOST_TEST(wait_bounded(p) == 3);  // again: at once, the same
    Process copy = p;                  // copies share the child
    BOOST_TEST(copy.returncode() == 3);
    BOOST_TEST(copy.pid() == p.pid());
    BOOST_TEST(reaped(p.pid()));

    Process none;
    BOOST_TEST(none.pid() == -1);
    BOOST_TEST(!none.returncode().has_value());
    BOOST_CHECK_THROW(none.wait(), RuntimeError);
  });
}

BOOST_AUTO_TEST_CASE(a_child_ended_by_a_signal_reports_it_negated) {
  run([] {
    Process killed = create_subprocess_exec({"sleep", "30"});
    Process terminated = create_subprocess_exec({"sleep", "30"});
    Process signalled = create_subprocess_exec({"sleep", "30"});
    killed.kill();
    terminated.terminate();
    signalled.send_signal(SIGUSR1);
    BOOST_TEST(wait_bounded(killed) == -SIGKILL);
    BOOST_TEST(wait_bounded(terminated) == -SIGTERM);
    BOOST_TEST(wait_bounded(signalled) == -SIGUSR1);
    // Reaped, the pid is no longer the child's: signalling does nothing
    // (kill(2) would fail with ESRCH, which would throw).
    BOOST_CHECK_NO_THROW(killed.send_signal(SIGKILL));
    BOOST_CHECK_NO_THROW(killed.kill());
    BOOST_CHECK_NO_THROW(terminated.terminate());
    BOOST_TEST(killed.returncode() == -SIGKILL);
    BOOST_TEST(terminated.returncode() == -SIGTERM);

    // A stopped child has not ended (nor has a continued one).
    Process stopped = create_subprocess_exec({"sleep", "30"});
    stopped.send_signal(SIGSTOP);
    fiberloop::sleep(0.05);
    BOOST_TEST(proc_state(stopped.pid()) == 'T');
    BOOST_TEST(!stopped.returncode().has_value());
    stopped.send_signal(SIGCONT);
    fiberloop::sleep(0.02);
    BOOST_TEST(!stopped.returncode().has_value());
    BOOST_TEST(running(stopped.pid()));
    stopped.kill();
    BOOST_TEST(wait_bounded(stopped) == -SIGKILL);

    // A signal number kill(2) refuses throws, and the child goes on.
    Process p = create_subprocess_exec({"sleep", "30"});
    try {
      p.send_signal(12345);
      BOOST_FAIL("send_signal(12345) did not throw");
    } catch (const std::system_error& e) {
      BOOST_TEST(e.code().value() == EINVAL);
    }
    BOOST_TEST(running(p.pid()));
    p.kill();
    BOOST_TEST(wait_bounded(p) == -SIGKILL);
  });
}

BOOST_AUTO_TEST_CASE(the_child_starts_with_no_blocked_signal_and_default_dispositions) {
  // SIGPIPE ignored here (as servers do) and SIGUSR2 handled by the loop
  // (blocked on this thread, as SIGCHLD in the sigchld mode): the child has
  // neither blocked nor ignored.
  struct sigaction ignore {}, old_pipe {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old_pipe);
  struct Restore {
    struct sigaction& old;
    ~Restore() { ::sigaction(SIGPIPE, &old, nullptr); }
  } restore{old_pipe};
  run([this] {
    bool handled = false;
    loop.add_signal_handler(SIGUSR2, [&] { handled = true; });
    sigset_t mask;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    BOOST_REQUIRE(::sigismember(&mask, SIGUSR2) == 1);
    Process p = create_subprocess_exec({"sleep", "30"});
    BOOST_TEST(sigmask_field(p.pid(), "SigBlk") == 0u);
    BOOST_TEST((sigmask_field(p.pid(), "SigIgn") & (bit(SIGPIPE) | bit(SIGUSR2))) == 0u);
    p.send_signal(SIGUSR2);  // its default action: the child ends
    BOOST_TEST(wait_bounded(p) == -SIGUSR2);
    fiberloop::sleep(0.01);
    BOOST_TEST(!handled);  // the loop's handler is this process's only
    BOOST_TEST(loop.remove_signal_handler(SIGUSR2));
  });
}

BOOST_AUTO_TEST_CASE(the_stream_options_reach_the_pipes) {
  run([] {
    Process p = create_subprocess_exec({"sh", "-c", "echo 0123456789abcdefghij; echo short"},
                                       {.out = Stdio::pipe(), .streams = {.limit = 16}});
    BOOST_TEST(p.stdout_reader().limit() == 16u);
    BOOST_CHECK_THROW(p.stdout_reader().readline(), fiberloop::LimitOverrunError);
    BOOST_TEST(p.stdout_reader().readline() == "short\n");
    BOOST_TEST(wait_bounded(p) == 0);
  });
}

BOOST_AUTO_TEST_CASE(sixteen_mib_each_way_through_cat_without_deadlock) {
  run(
      [] {
        Process p =
            create_subprocess_exec({"cat"}, {.in = Stdio::pipe(), .out = Stdio::pipe()});
        // One task writes all of it before closing, another reads at once:
        // neither may wait for the other.
        auto writer = fiberloop::spawn([&] {
          net::StreamWriter& w = p.stdin_writer();
          std::size_t chunk = 256 * 1024 + 7;  // not a power of two
          for (std::size_t off = 0; off < kBig; off += chunk) {
            w.write(pattern_bytes(off, std::min(chunk, kBig - off)));
            w.drain();
          }
          w.close();
        });
        std::size_t got = 0, first_wrong = std::string::npos;
        std::uint64_t sum = kFnvBasis;
        auto reader = fiberloop::spawn([&] {
          net::StreamReader& r = p.stdout_reader();
          for (std::string s; !(s = r.read(100000)).empty(); got += s.size()) {
            for (std::size_t i = 0; i < s.size() && first_wrong == std::string::npos; ++i) {
              if (s[i] != pattern(got + i)) first_wrong = got + i;
            }
            sum = fnv1a(sum, s);
          }
        });
        fiberloop::await(writer);
        fiberloop::await(reader);
        BOOST_TEST(got == kBig);
        BOOST_TEST(first_wrong == std::string::npos);
        BOOST_TEST(sum == fnv1a(kFnvBasis, pattern_bytes(0, kBig)));
        BOOST_TEST(wait_bounded(p) == 0);
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(communicate_sixteen_mib_with_stderr_piped_too) {
  run(
      [] {
        Process p = create_subprocess_exec(
            {"sh", "-c", "cat; echo err >&2"},
            {.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::pipe()});
        std::string input = pattern_bytes(0, kBig);
        auto [out, err] = p.communicate(input);
        BOOST_TEST(out.size() == kBig);
        BOOST_TEST((out == input));
        BOOST_TEST(fnv1a(kFnvBasis, out) == fnv1a(kFnvBasis, input));
        BOOST_TEST(err == "err\n");
        BOOST_TEST(p.returncode() == 0);

        // A child that writes much to stderr before it reads any input:
        // communicate() reads while it writes.
        Process q = create_subprocess_exec(
            {"sh", "-c", "head -c 4194304 /dev/zero >&2; cat"},
            {.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::pipe()});
        std::string small = pattern_bytes(0, 4u << 20);
        auto [qout, qerr] = q.communicate(small);
        BOOST_TEST((qout == small));
        BOOST_TEST((qerr == std::string(4u << 20, '\0')));
        BOOST_TEST(q.returncode() == 0);
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(communicate_without_input_and_with_input_unpiped) {
  run([] {
    Process p = create_subprocess_exec({"sh", "-c", "echo out; echo err >&2; exit 2"},
                                       {.out = Stdio::pipe(), .err = Stdio::pipe()});
    auto [out, err] = p.communicate();
    BOOST_TEST(out == "out\n");
    BOOST_TEST(err == "err\n");
    BOOST_TEST(p.returncode() == 2);

    // Only stdout piped: stderr's half is "".
    Process q = create_subprocess_exec({"sh", "-c", "echo only"}, {.out = Stdio::pipe()});
    auto [qout, qerr] = q.communicate();
    BOOST_TEST(qout == "only\n");
    BOOST_TEST(qerr == "");
    BOOST_TEST(q.returncode() == 0);

    // Input for a stdin that is not a pipe is refused, and the child is
    // left alone.
    Process r = create_subprocess_exec({"sh", "-c", "exit 9"}, {.out = Stdio::pipe()});
    try {
      r.communicate("lost");
      BOOST_FAIL("communicate(input) with stdin not piped did not throw");
    } catch (const RuntimeError& e) {
      BOOST_TEST(std::string(e.what()).find("stdin") != std::string::npos);
    }
    BOOST_TEST(r.communicate().first == "");
    BOOST_TEST(r.returncode() == 9);

    // A child that exits without reading its input is no error.
    Process s = create_subprocess_exec({"sh", "-c", "exit 5"}, {.in = Stdio::pipe()});
    auto [sout, serr] = s.communicate(std::string(4u << 20, 'x'));
    BOOST_TEST(sout == "");
    BOOST_TEST(s.returncode() == 5);
  });
}

BOOST_AUTO_TEST_CASE(two_hundred_concurrent_children) {
  run(
      [] {
        constexpr int n = 200;
        std::vector<Process> ps;
        for (int i = 0; i < n; ++i) {
          ps.push_back(create_subprocess_exec(
              {"sh", "-c", "echo $0; exit $(($0 % 7))", std::to_string(i)}, {.out = Stdio::pipe()}));
        }
        std::vector<std::string> outs(n);
        std::vector<fiberloop::Task<void>> tasks;
        for (int i = n - 1; i >= 0; --i) {  // the other way round from their start
          tasks.push_back(fiberloop::spawn([&, i] { outs[i] = ps[i].communicate().first; }));
        }
        for (auto& t : tasks) fiberloop::with_timeout(20.0, [&] { fiberloop::await(t); });
        std::set<pid_t> pids;
        int wrong = 0;
        for (int i = 0; i < n; ++i) {
          pids.insert(ps[i].pid());
          if (outs[i] != std::to_string(i) + "\n" || ps[i].returncode() != i % 7 ||
              !reaped(ps[i].pid())) {
            ++wrong;
            BOOST_TEST_MESSAGE("child " << i << ": out '" << outs[i] << "' returncode "
                                        << ps[i].returncode().value_or(-1000));
          }
        }
        BOOST_TEST(wrong == 0);
        BOOST_TEST(pids.size() == std::size_t{n});
      },
      60.0);
}

BOOST_AUTO_TEST_CASE(a_killed_child_ends_its_output) {
  run([] {
    Process p = create_subprocess_exec({"yes"}, {.out = Stdio::pipe()});
    BOOST_TEST(p.stdout_reader().readline() == "y\n");
    p.kill();
    // What it wrote before it died, then the end of the stream.
    std::size_t rest = 0;
    fiberloop::with_timeout(5.0, [&] {
      for (std::string s; !(s = p.stdout_reader().read(65536)).empty();) rest += s.size();
    });
    BOOST_TEST(p.stdout_reader().at_eof());
    BOOST_TEST(wait_bounded(p) == -SIGKILL);
    BOOST_TEST(reaped(p.pid()));
  });
}

BOOST_AUTO_TEST_CASE(a_child_closing_stdout_early_gives_eof_at_once_and_exits_later) {
  run([this] {
    Process p = create_subprocess_exec({"sh", "-c", "exec 1>&-; sleep 0.5; exit 4"},
                                       {.out = Stdio::pipe()});
    double start = loop.time();
    BOOST_TEST(fiberloop::with_timeout(5.0, [&] { return p.stdout_reader().read(); }) == "");
    double eof_after = loop.time() - start;
    BOOST_TEST(eof_after < 0.4);  // not at the child's exit
    BOOST_TEST(!p.returncode().has_value());
    BOOST_TEST(running(p.pid()));
    BOOST_TEST(wait_bounded(p) == 4);
    BOOST_TEST(loop.time() - start >= 0.4);
  });
}

BOOST_AUTO_TEST_CASE(exec_failures_throw_and_the_loop_goes_on) {
  TempDir dir;
  std::string not_executable = dir.write("script.sh", "#!/bin/sh\nexit 0\n", 0644);
  std::string a_file = dir.write("plain", "x", 0644);
  run([&] {
    int ticks = 0;
    auto ticker = fiberloop::spawn([&] {
      for (;;) {
        fiberloop::sleep(0.002);
        ++ticks;
      }
    });
    ok_child();  // the watcher's own fds (the sigchld mode's signalfd) are open from here
    std::size_t fds_before = open_fds().size();
    std::size_t children_before = children_of(::getpid()).size();
    SubprocessOptions piped{.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::pipe()};

    auto expect_errno = [&](std::vector<std::string> argv, SubprocessOptions options, int err,
                            const std::string& named) {
      try {
        create_subprocess_exec(argv, options);
        BOOST_ERROR("no error starting '" << argv[0] << "'");
      } catch (const std::system_error& e) {
        BOOST_TEST(e.code().value() == err, argv[0] << ": " << e.what());
        BOOST_TEST(std::string(e.what()).find(named) != std::string::npos, e.what());
      }
      ok_child();
    };
    expect_errno({"fiberloop-no-such-program", "arg"}, {}, ENOENT, "fiberloop-no-such-program");
    expect_errno({"fiberloop-no-such-program"}, piped, ENOENT, "fiberloop-no-such-program");
    expect_errno({"/nonexistent/fiberloop-prog"}, {}, ENOENT, "/nonexistent/fiberloop-prog");
    expect_errno({not_executable}, piped, EACCES, not_executable);
    expect_errno({"true"}, {.cwd = "/nonexistent-fiberloop-dir"}, ENOENT,
                 "/nonexistent-fiberloop-dir");
    expect_errno({"true"}, {.cwd = a_file}, ENOTDIR, a_file);

    auto expect_invalid = [&](std::vector<std::string> argv, SubprocessOptions options,
                              const std::string& why) {
      BOOST_TEST_CONTEXT(why) {
        BOOST_CHECK_THROW(create_subprocess_exec(argv, options), std::invalid_argument);
      }
      ok_child();
    };
    expect_invalid({}, {}, "empty argv");
    expect_invalid({"echo", "a\0b"s}, {}, "a NUL in an argument");
    expect_invalid({"ec\0ho"s}, {}, "a NUL in the program");
    expect_invalid({"true"}, {.cwd = "/tm\0p"s}, "a NUL in cwd");
    using Env = std::map<std::string, std::string>;
    expect_invalid({"true"}, {.env = Env{{"A=B", "c"}}}, "'=' in an environment name");
    expect_invalid({"true"}, {.env = Env{{"", "c"}}}, "an empty environment name");
    expect_invalid({"true"}, {.env = Env{{"A\0B"s, "c"}}}, "a NUL in an environment name");
    expect_invalid({"true"}, {.env = Env{{"A", "b\0c"s}}}, "a NUL in an environment value");
    expect_invalid({"true"}, {.out = Stdio::to_stdout()}, "to_stdout() for stdout");
    expect_invalid({"true"}, {.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::from_fd(-1)},
                   "from_fd(-1) for stderr, after two pipes");
    expect_invalid({"true"}, {.in = Stdio::to_stdout()}, "to_stdout() for stdin");
    expect_invalid({"true"}, {.in = Stdio::from_fd(-1)}, "from_fd(-1) for stdin");
    expect_invalid({"true"}, {.out = Stdio::from_fd(-1)}, "from_fd(-1) for stdout");

    // Nothing left behind by the failures: no fd, no child.
    BOOST_TEST(open_fds().size() == fds_before);
    BOOST_TEST(children_of(::getpid()).size() == children_before);
    BOOST_TEST(ticks > 0);  // the other task ran meanwhile
    int seen = ticks;
    fiberloop::sleep(0.02);
    BOOST_TEST(ticks > seen);
    ticker.cancel();
    BOOST_CHECK_THROW(fiberloop::await(ticker), CancelledError);
  });
}

BOOST_AUTO_TEST_CASE(starting_a_child_needs_a_running_loop) {
  BOOST_CHECK_THROW(create_subprocess_exec({"true"}), RuntimeError);
  // ...and a callback on the loop will do, not only a task.
  Process p;
  loop.call_soon([&] { p = create_subprocess_exec({"sh", "-c", "exit 6"}); });
  BOOST_TEST(run([&] {
               fiberloop::sleep(0);
               return wait_bounded(p);
             }) == 6);
}

// Every fd the library opens is close-on-exec: with close_fds = false a
// child inherits exactly this process's fds that are not, and none of the
// loop's (epoll, signalfd, pidfd, sockets, eventfd...).
BOOST_AUTO_TEST_CASE(no_fd_of_the_loop_reaches_a_child) {
  run([this] {
    loop.add_signal_handler(SIGUSR1, [] {});  // a signalfd
    net::Socket listening = listener();        // sockets
    StreamPair connection = stream_pair();
    Process other = create_subprocess_exec({"sleep", "30"},  // a pidfd, stdio sockets
                                           {.in = Stdio::pipe(), .out = Stdio::pipe()});
    int inherited = ::open("/dev/null", O_RDONLY);  // deliberately not close-on-exec
    BOOST_REQUIRE(inherited >= 3);
    Pipe private_pipe;  // close-on-exec, the test's own

    std::map<int, std::string> parent = open_fds();
    std::map<std::string, int> kinds;
    std::map<int, std::string> expected;  // what a child with close_fds = false gets
    for (const auto& [fd, target] : parent) {
      if (target.rfind("anon_inode:", 0) == 0 || target.rfind("socket:", 0) == 0) {
        ++kinds[target.rfind("socket:", 0) == 0 ? "socket" : target];
        BOOST_TEST(cloexec(fd), "the library's fd " << fd << " (" << target
                                                    << ") is not close-on-exec");
      }
      if (fd >= 3 && !cloexec(fd)) expected[fd] = target;
    }
    BOOST_TEST(kinds["anon_inode:[eventpoll]"] >= 1);
    BOOST_TEST(kinds["anon_inode:[signalfd]"] == 1);
    BOOST_TEST(kinds["socket"] >= 5);
    if (ChildWatcher::uses_pidfd()) BOOST_TEST(kinds["anon_inode:[pidfd]"] == 1);
    BOOST_TEST(expected.count(inherited) == 1);

    // ls -l /proc/self/fd: "... N -> target" per fd, and one for the
    // directory ls reads (/proc/<its pid>/fd), which is left out.
    auto child_fds = [](bool close_fds) {
      Process p = create_subprocess_exec({"ls", "-l", "/proc/self/fd"},
                                         {.out = Stdio::pipe(), .close_fds = close_fds});
      std::string listing = p.communicate().first;
      BOOST_TEST(p.returncode() == 0);
      std::map<int, std::string> fds;
      std::istringstream in(listing);
      std::string own_dir = "/proc/" + std::to_string(p.pid()) + "/fd";
      for (std::string line; std::getline(in, line);) {
        auto arrow = line.find(" -> ");
        if (arrow == std::string::npos) continue;
        auto space = line.rfind(' ', arrow - 1);
        int fd = std::stoi(line.substr(space + 1, arrow - space - 1));
        std::string target = line.substr(arrow + 4);
        if (target != own_dir) fds[fd] = target;
      }
      BOOST_TEST(fds.count(0) + fds.count(1) + fds.count(2) == 3u, listing);
      BOOST_TEST(fds[1].rfind("socket:", 0) == 0);  // its stdout pipe
      return fds;
    };

    std::map<int, std::string> open_in_child = child_fds(false);
    std::map<int, std::string> extra;
    for (const auto& [fd, target] : open_in_child) {
      if (fd >= 3) extra[fd] = target;
    }
    for (const auto& [fd, target] : extra) {
      BOOST_TEST(expected.count(fd) == 1, "the child has fd " << fd << " (" << target
                                                                << "): not one to inherit");
    }
    for (const auto& [fd, target] : expected) {
      BOOST_TEST(extra[fd] == target, "fd " << fd << " (" << target << ") not inherited");
    }

    std::map<int, std::string> closed_child = child_fds(true);
    BOOST_TEST(closed_child.size() == 3u);  // 0, 1 and 2 only
    BOOST_TEST(closed_child.count(inherited) == 0);

    ::close(inherited);
    other.kill();
    BOOST_TEST(wait_bounded(other) == -SIGKILL);
    BOOST_TEST(loop.remove_signal_handler(SIGUSR1));
  });
}

BOOST_AUTO_TEST_CASE(cwd_and_env) {
  TempDir dir;
  std::string real = std::filesystem::canonical(dir.path).string();
  dir.write("prog.sh", "#!/bin/sh\necho \"relative $1\"\n", 0755);
  BOOST_REQUIRE(::setenv("FIBERLOOP_SUBPROCESS_TEST", "from the parent", 1) == 0);
  run([&] {
    using Env = std::map<std::string, std::string>;
    Process p = create_subprocess_exec(
        {"sh", "-c", "pwd; echo \"$FOO\"; echo \"${FIBERLOOP_SUBPROCESS_TEST-unset}\""},
        {.out = Stdio::pipe(), .cwd = dir.path, .env = Env{{"FOO", "bar baz"}, {"EMPTY", ""}}});
    BOOST_TEST(p.communicate().first == real + "\nbar baz\nunset\n");

    // No env: the parent's environment.
    Process q = create_subprocess_exec({"sh", "-c", "echo \"$FIBERLOOP_SUBPROCESS_TEST\""},
                                       {.out = Stdio::pipe()});
    BOOST_TEST(q.communicate().first == "from the parent\n");

    // An empty env is an empty environment.
    Process e = create_subprocess_exec({"/usr/bin/env"}, {.out = Stdio::pipe(), .env = Env{}});
    BOOST_TEST(e.communicate().first == "");
    BOOST_TEST(e.returncode() == 0);

    // A relative program path is looked up from cwd.
    Process r = create_subprocess_exec({"./prog.sh", "x"}, {.out = Stdio::pipe(), .cwd = dir.path});
    BOOST_TEST(r.communicate().first == "relative x\n");
    BOOST_TEST(r.returncode() == 0);
  });
  ::unsetenv("FIBERLOOP_SUBPROCESS_TEST");
}

// The child's process group and session, from its /proc stat line (the
// fields after the command's closing parenthesis: state ppid pgrp session).
struct GroupAndSession {
  long pgrp = -1, session = -1;
};
GroupAndSession group_and_session(const std::string& stat) {
  std::istringstream rest(stat.substr(stat.rfind(')') + 1));
  std::string state;
  long ppid = 0;
  GroupAndSession g;
  rest >> state >> ppid >> g.pgrp >> g.session;
  return g;
}

BOOST_AUTO_TEST_CASE(new_session_and_process_group) {
  run([&] {
    const std::vector<std::string> stat_of_self = {"sh", "-c", "read -r l < /proc/$$/stat; echo \"$l\""};
    Process plain = create_subprocess_exec(stat_of_self, {.out = Stdio::pipe()});
    GroupAndSession g = group_and_session(plain.communicate().first);
    BOOST_TEST(g.pgrp == static_cast<long>(::getpgrp()));
    BOOST_TEST(g.session == static_cast<long>(::getsid(0)));

    Process leader = create_subprocess_exec(stat_of_self, {.out = Stdio::pipe(), .new_session = true});
    g = group_and_session(leader.communicate().first);
    BOOST_TEST(g.pgrp == static_cast<long>(leader.pid()));
    BOOST_TEST(g.session == static_cast<long>(leader.pid()));

    // A group of its own, then a second child in it: one killpg ends both.
    Process first = create_subprocess_exec({"sleep", "30"}, {.process_group = 0});
    Process second = create_subprocess_exec({"sleep", "30"}, {.process_group = first.pid()});
    BOOST_TEST(::getpgid(first.pid()) == first.pid());
    BOOST_TEST(::getpgid(second.pid()) == first.pid());
    BOOST_TEST(::getsid(first.pid()) == ::getsid(0));
    BOOST_REQUIRE(::killpg(first.pid(), SIGTERM) == 0);
    BOOST_TEST(first.wait() == -SIGTERM);
    BOOST_TEST(second.wait() == -SIGTERM);

    BOOST_CHECK_THROW(create_subprocess_exec({"true"}, {.process_group = -1}), std::invalid_argument);
    BOOST_CHECK_THROW(create_subprocess_exec({"true"}, {.new_session = true, .process_group = 0}),
                      std::invalid_argument);
  });
}

BOOST_AUTO_TEST_CASE(stdio_devnull) {
  run([] {
    Process p = create_subprocess_exec({"sh", "-c", "echo lost; fd1=$(readlink /proc/$$/fd/1); echo \"$fd1\" >&2"},
                                       {.out = Stdio::devnull(), .err = Stdio::pipe()});
    auto [out, err] = p.communicate();
    BOOST_TEST(out == "");
    BOOST_TEST(err == "/dev/null\n");
    BOOST_TEST(p.returncode() == 0);

    Process q = create_subprocess_exec({"sh", "-c", "echo out"}, {.out = Stdio::devnull()});
    BOOST_TEST(q.communicate().first == "");

    // /dev/null as stdin: cat ends at once.
    Process c = create_subprocess_exec({"cat"}, {.in = Stdio::devnull(), .out = Stdio::pipe()});
    BOOST_TEST(c.communicate().first == "");
    BOOST_TEST(c.returncode() == 0);
  });
}

BOOST_AUTO_TEST_CASE(stdio_from_fd) {
  TempDir dir;
  run([&] {
    // A pipe of ours as stdout; it stays ours, close-on-exec as it was.
    Pipe pipe;
    Process p = create_subprocess_exec({"sh", "-c", "echo via-pipe"}, {.out = Stdio::from_fd(pipe.w)});
    BOOST_TEST(wait_bounded(p) == 0);
    BOOST_TEST(::fcntl(pipe.w, F_GETFD) >= 0);
    BOOST_TEST(cloexec(pipe.w));
    pipe.close_w();
    BOOST_TEST(pipe.drain() == "via-pipe\n");

    // A file of ours as stdin.
    int file = ::open((dir.path + "/input").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    BOOST_REQUIRE(file >= 0);
    BOOST_REQUIRE(::write(file, "line 1\nline 2\n", 14) == 14);
    BOOST_REQUIRE(::lseek(file, 0, SEEK_SET) == 0);
    Process c = create_subprocess_exec({"cat"}, {.in = Stdio::from_fd(file), .out = Stdio::pipe()});
    BOOST_TEST(c.communicate().first == "line 1\nline 2\n");
    BOOST_TEST(c.returncode() == 0);
    BOOST_TEST(::fcntl(file, F_GETFD) >= 0);
    ::close(file);
  });
}

BOOST_AUTO_TEST_CASE(stdio_inherit) {
  run([] {
    // What this process's standard fds are, the child's are: put pipes
    // there while the child starts.
    Pipe in, out;
    BOOST_REQUIRE(::write(in.w, "typed\n", 6) == 6);
    in.close_w();
    Process p;
    {
      Redirected fd0(0, in.r), fd1(1, out.w), fd2(2, out.w);
      p = create_subprocess_exec({"sh", "-c", "read x; echo \"out $x\"; echo \"err $x\" >&2"});
    }
    BOOST_TEST(wait_bounded(p) == 0);
    out.close_w();
    BOOST_TEST(out.drain() == "out typed\nerr typed\n");
  });
}

BOOST_AUTO_TEST_CASE(stdio_err_to_stdout) {
  run([] {
    Process p = create_subprocess_exec({"sh", "-c", "echo out; echo err >&2"},
                                       {.out = Stdio::pipe(), .err = Stdio::to_stdout()});
    auto [out, err] = p.communicate();
    BOOST_TEST(out == "out\nerr\n");
    BOOST_TEST(err == "");
    BOOST_CHECK_THROW(p.stderr_reader(), RuntimeError);

    Pipe pipe;
    Process q = create_subprocess_exec({"sh", "-c", "echo out; echo err >&2"},
                                       {.out = Stdio::from_fd(pipe.w), .err = Stdio::to_stdout()});
    BOOST_TEST(wait_bounded(q) == 0);
    pipe.close_w();
    BOOST_TEST(pipe.drain() == "out\nerr\n");
  });
}

// from_fd(1) for stderr is this process's stdout, even when the child's
// stdout is a pipe: the child's fd 1 is set up first, and must not be what
// its fd 2 gets.
BOOST_AUTO_TEST_CASE(stdio_from_a_standard_fd_the_child_replaces) {
  run([] {
    Pipe ours;
    Process p;
    {
      Redirected stdout_to(1, ours.w);
      p = create_subprocess_exec({"sh", "-c", "echo out; echo err >&2"},
                                 {.out = Stdio::pipe(), .err = Stdio::from_fd(1)});
    }
    BOOST_TEST(p.communicate().first == "out\n");
    BOOST_TEST(p.returncode() == 0);
    ours.close_w();
    BOOST_TEST(ours.drain() == "err\n");

    // out = from_fd(0) is this process's fd 0, not the child's stdin pipe
    // (which the child's fd 0 is by then).
    Pipe zero;
    {
      Redirected fd0_to(0, zero.w);
      p = create_subprocess_exec({"sh", "-c", "echo via-fd-0"},
                                 {.in = Stdio::pipe(), .out = Stdio::from_fd(0)});
    }
    p.stdin_writer().close();
    BOOST_TEST(wait_bounded(p) == 0);
    zero.close_w();
    BOOST_TEST(zero.drain() == "via-fd-0\n");
  });
}

BOOST_AUTO_TEST_CASE(a_cancelled_wait_leaves_the_child_running) {
  run([] {
    Process p = create_subprocess_exec({"sleep", "30"});
    auto waiter = fiberloop::spawn([&] { return p.wait(); });
    fiberloop::sleep(0.02);
    BOOST_TEST(!waiter.done());
    waiter.cancel();
    BOOST_CHECK_THROW(fiberloop::await(waiter), CancelledError);
    BOOST_TEST(::kill(p.pid(), 0) == 0);
    BOOST_TEST(running(p.pid()));
    BOOST_TEST(!p.returncode().has_value());
    // A timeout is a cancellation too.
    BOOST_CHECK_THROW(fiberloop::wait_for([&] { return p.wait(); }, 0.02), TimeoutError);
    BOOST_TEST(running(p.pid()));
    // The child is still watched: it is reaped when it ends.
    p.terminate();
    BOOST_TEST(wait_bounded(p) == -SIGTERM);
    BOOST_TEST(reaped(p.pid()));
  });
}

BOOST_AUTO_TEST_CASE(a_cancelled_communicate_leaves_the_child_running) {
  run([] {
    // Cancelled while it reads.
    Process p = create_subprocess_exec(
        {"sleep", "30"}, {.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::pipe()});
    auto talker = fiberloop::spawn([&] { return p.communicate("some input"); });
    fiberloop::sleep(0.02);
    BOOST_TEST(!talker.done());
    talker.cancel();
    BOOST_CHECK_THROW(fiberloop::await(talker), CancelledError);
    BOOST_TEST(running(p.pid()));
    BOOST_TEST(!p.returncode().has_value());
    p.kill();
    // The streams are usable after it: they end with the child.
    BOOST_TEST(fiberloop::with_timeout(5.0, [&] { return p.stdout_reader().read(); }) == "");
    BOOST_TEST(wait_bounded(p) == -SIGKILL);
    BOOST_TEST(reaped(p.pid()));

    // Python's idiom: communicate() under a timeout, kill, communicate()
    // again to collect what is left and reap.
    Process r = create_subprocess_exec(
        {"sh", "-c", "echo partial; exec sleep 30"},
        {.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::pipe()});
    BOOST_TEST(r.stdout_reader().readline() == "partial\n");
    BOOST_CHECK_THROW(fiberloop::wait_for([&] { return r.communicate("input"); }, 0.05),
                      TimeoutError);
    BOOST_TEST(running(r.pid()));
    r.kill();
    try {
      auto [rout, rerr] = fiberloop::with_timeout(5.0, [&] { return r.communicate(); });
      BOOST_TEST(rout == "");
      BOOST_TEST(rerr == "");
    } catch (const std::exception& e) {
      BOOST_ERROR("communicate() after a timed-out one threw: " << e.what());
    }
    BOOST_TEST(wait_bounded(r) == -SIGKILL);
    BOOST_TEST(reaped(r.pid()));

    // Cancelled while it waits for the exit (both streams ended already).
    Process q = create_subprocess_exec({"sh", "-c", "exec >&- 2>&- sleep 30"},
                                       {.out = Stdio::pipe(), .err = Stdio::pipe()});
    BOOST_CHECK_THROW(fiberloop::wait_for([&] { return q.communicate(); }, 0.2), TimeoutError);
    BOOST_TEST(q.stdout_reader().at_eof());
    BOOST_TEST(q.stderr_reader().at_eof());
    BOOST_TEST(running(q.pid()));
    q.kill();
    auto [out, err] = fiberloop::with_timeout(5.0, [&] { return q.communicate(); });
    BOOST_TEST(out == "");
    BOOST_TEST(q.returncode() == -SIGKILL);
    BOOST_TEST(reaped(q.pid()));
  });
}

BOOST_AUTO_TEST_CASE(a_dropped_process_is_still_reaped) {
  run([this] {
    pid_t plain, piped;
    {
      Process p = create_subprocess_exec({"sh", "-c", "sleep 0.2; exit 3"});
      plain = p.pid();
      Process q = create_subprocess_exec(
          {"sh", "-c", "echo x; echo y >&2; sleep 0.2"},
          {.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::pipe()});
      piped = q.pid();
      BOOST_TEST(running(plain));
      BOOST_TEST(running(piped));
    }
    double deadline = loop.time() + 5.0;
    while ((proc_state(plain) || proc_state(piped)) && loop.time() < deadline) {
      fiberloop::sleep(0.01);
    }
    // Gone from /proc: reaped (a zombie nobody reaped would show 'Z').
    BOOST_TEST(proc_state(plain) == 0);
    BOOST_TEST(proc_state(piped) == 0);
    BOOST_TEST(reaped(plain));
    BOOST_TEST(reaped(piped));
  });
}

BOOST_AUTO_TEST_CASE(closing_the_loop_kills_and_reaps_the_children_left) {
  std::vector<Process> ps;
  expected_reports = 2;  // the two tasks left: "Task was destroyed but it is pending!"
  run([&] {
    ps.push_back(create_subprocess_exec({"sleep", "30"}));
    ps.push_back(create_subprocess_exec(
        {"sleep", "30"}, {.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::pipe()}));
    ps.push_back(create_subprocess_shell("exec sleep 30"));
    // A task left waiting for one of them, and one reading another's stdout.
    fiberloop::spawn([p = ps[0]]() mutable { p.wait(); });
    fiberloop::spawn([p = ps[1]]() mutable { p.stdout_reader().read(); });
    fiberloop::sleep(0.02);
    for (auto& p : ps) BOOST_TEST(running(p.pid()));
  });
  auto start = std::chrono::steady_clock::now();
  ::alarm(20);  // a close() that hangs dies of SIGALRM (Boost.Test reports it)
  loop.close();
  ::alarm(0);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  BOOST_TEST(took < 5.0);
  for (auto& p : ps) {
    BOOST_TEST(p.returncode() == -SIGKILL);
    BOOST_TEST(proc_state(p.pid()) == 0);
    BOOST_TEST(reaped(p.pid()));
    BOOST_TEST(p.wait() == -SIGKILL);  // at once: it ended
    BOOST_CHECK_NO_THROW(p.kill());
  }
}

BOOST_AUTO_TEST_CASE(create_subprocess_shell_exit_statuses) {
  run([] {
    Process p = create_subprocess_shell("exit 7");
    BOOST_TEST(wait_bounded(p) == 7);

    Process missing = create_subprocess_shell("fiberloop-no-such-command-xyz",
                                              {.err = Stdio::pipe()});
    auto [out, err] = missing.communicate();
    BOOST_TEST(missing.returncode() == 127);
    BOOST_TEST(err.find("fiberloop-no-such-command-xyz") != std::string::npos, err);

    Process pipeline = create_subprocess_shell("echo a b c | wc -w", {.out = Stdio::pipe()});
    auto words = pipeline.communicate().first;
    BOOST_TEST(std::stoi(words) == 3);
    BOOST_TEST(pipeline.returncode() == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
