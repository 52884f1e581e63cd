// The hooks' own semantics (libfiberloop-hooks, docs/hooks.md): inside a
// task, libc's blocking calls on sockets, pipes and ttys wait on the loop
// while other tasks run; sleeps use the loop's timers; getaddrinfo runs on
// the executor. Outside a task, on regular files and on fds the user made
// non-blocking, every call is libc's own. Time is the loop's, and every
// wait is bounded (a blocking socket's SO_RCVTIMEO, poll's timeout, or a
// task cancelled by the test).
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fiberloop/fiberloop.hpp>
#include <fiberloop/hooks.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../fd_helpers.hpp"
// A sanitized build's object pool goes to the heap on purpose: no counting there.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#include "../heap_counter.hpp"
#endif

namespace {

using fiberloop::await;
using fiberloop::spawn;

// Blocking ends, as a C library makes them.
Pair blocking_socketpair() {
  int sv[2];
  BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  return {Fd(sv[0]), Fd(sv[1])};
}
Pair blocking_pipe() {
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  return {Fd(p[0]), Fd(p[1])};
}

// Ticker counts loop iterations a task got while another task was in a
// hooked call: the proof that the call did not hold the thread.
struct Ticker {
  long ticks = 0;
  bool stop = false;
  fiberloop::Task<void> task = spawn([this] {
    while (!stop) {
      ++ticks;
      fiberloop::sleep(0.001);
    }
  });
  ~Ticker() {
    stop = true;
    await(task);
  }
};

double now() { return fiberloop::get_running_loop().time(); }

std::string bytes(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7919) % 26);
  return s;
}

// A read on a silent socket whose wait the test cuts short: SO_RCVTIMEO.
void set_receive_timeout(int fd, double seconds) {
  timeval tv{static_cast<time_t>(seconds), static_cast<suseconds_t>((seconds - static_cast<long>(seconds)) * 1e6)};
  BOOST_REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_hooks_are_in_effect) {
  fiberloop::hooks::Status s = fiberloop::hooks::status();
  BOOST_TEST(s.in_effect);
  BOOST_TEST(s.lost.empty());
}

BOOST_AUTO_TEST_CASE(sleep_for_in_many_tasks_takes_one_sleep) {
#if defined(__SANITIZE_THREAD__)
  constexpr int kTasks = 1000;  // TSan's fiber switches cost ~0.5 ms each
#else
  constexpr int kTasks = 10000;
#endif
  auto before = fiberloop::hooks::stats().sleeps;
  auto t0 = std::chrono::steady_clock::now();
  fiberloop::run([] {
    std::vector<fiberloop::Task<void>> tasks;
    for (int i = 0; i < kTasks; ++i)
      tasks.push_back(spawn([] { std::this_thread::sleep_for(std::chrono::milliseconds(200)); }));
    for (auto& t : tasks) await(t);
  });
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(took >= 0.2);
  BOOST_TEST(took < 5.0);  // serially: kTasks x 0.2 s
  BOOST_TEST(fiberloop::hooks::stats().sleeps - before >= kTasks);
}

BOOST_AUTO_TEST_CASE(each_sleep_call_sleeps_on_the_loop) {
  // Virtual time: the loop's clock is exact, so each sleep is measured.
  fiberloop::run(fiberloop::RunOptions{.virtual_time = true}, [] {
    Ticker ticker;
    double t = now();
    timespec half{0, 500'000'000}, rem{9, 9};
    BOOST_TEST(::nanosleep(&half, &rem) == 0);
    BOOST_TEST(now() - t == 0.5, boost::test_tools::tolerance(1e-6));
    t = now();
    BOOST_TEST(::usleep(250'000) == 0);
    BOOST_TEST(now() - t == 0.25, boost::test_tools::tolerance(1e-6));
    t = now();
    BOOST_TEST(::sleep(2) == 0u);
    BOOST_TEST(now() - t == 2.0, boost::test_tools::tolerance(1e-6));
    t = now();
    timespec one{1, 0};
    BOOST_TEST(::clock_nanosleep(CLOCK_MONOTONIC, 0, &one, nullptr) == 0);
    BOOST_TEST(now() - t == 1.0, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(ticker.ticks > 100);  // it ran all along
    // Bad input is libc's answer, in a task as outside.
    timespec bad{0, 1'000'000'000};
    errno = 0;
    BOOST_TEST(::nanosleep(&bad, nullptr) == -1);
    BOOST_TEST(errno == EINVAL);
    BOOST_TEST(::clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, nullptr) == EINVAL);
    timespec negative{-1, 0};
    BOOST_TEST(::nanosleep(&negative, nullptr) == -1);
  });
}

BOOST_AUTO_TEST_CASE(an_absolute_clock_nanosleep_waits_until_then) {
  fiberloop::run([] {
    Ticker ticker;
    timespec until;
    ::clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += 100'000'000;
    if (until.tv_nsec >= 1'000'000'000) {
      until.tv_nsec -= 1'000'000'000;
      ++until.tv_sec;
    }
    BOOST_TEST(::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == 0);
    timespec after;
    ::clock_gettime(CLOCK_MONOTONIC, &after);
    BOOST_TEST((after.tv_sec > until.tv_sec ||
                (after.tv_sec == until.tv_sec && after.tv_nsec >= until.tv_nsec)));
    BOOST_TEST(ticker.ticks > 5);
  });
}

BOOST_AUTO_TEST_CASE(a_cancelled_sleep_fails_with_ecanceled_and_the_task_sees_cancelled_error) {
  fiberloop::run(fiberloop::RunOptions{.virtual_time = true}, [] {
    int result = 0, error = 0;
    timespec rem{0, 0};
    bool raised = false;
    auto sleeper = spawn([&] {
      timespec ten{10, 0};
      result = ::nanosleep(&ten, &rem);
      error = errno;
      try {
        fiberloop::sleep(0);  // the first fiberloop wait after the C call
      } catch (const fiberloop::CancelledError&) {
        raised = true;
        throw;
      }
    });
    fiberloop::sleep(1.0);
    sleeper.cancel();
    BOOST_CHECK_THROW(await(sleeper), fiberloop::CancelledError);
    BOOST_TEST(result == -1);
    BOOST_TEST(error == ECANCELED);
    BOOST_TEST(rem.tv_sec == 9);  // the time not slept
    BOOST_TEST(raised);
    BOOST_TEST(sleeper.cancelled());
  });
}

BOOST_AUTO_TEST_CASE(a_blocking_socket_read_waits_while_other_tasks_run) {
  Pair p = blocking_socketpair();
  fiberloop::run([&] {
    Ticker ticker;
    auto waits = fiberloop::hooks::stats().waits;
    auto reader = spawn([&] {
      char buf[16];
      ssize_t n = ::read(p.r.get(), buf, sizeof buf);
      return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    });
    fiberloop::sleep(0.05);
    long during = ticker.ticks;
    BOOST_TEST(!reader.done());
    BOOST_TEST(::write(p.w.get(), "hello", 5) == 5);
    BOOST_TEST(await(reader) == "hello");
    BOOST_TEST(during > 5);
    BOOST_TEST(fiberloop::hooks::stats().waits > waits);
    // The hooks never change the fd's blocking mode.
    BOOST_TEST((::fcntl(p.r.get(), F_GETFL) & O_NONBLOCK) == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_blocking_write_sends_everything_as_libc_would) {
  for (bool socket : {true, false}) {
    Pair p = socket ? blocking_socketpair() : blocking_pipe();
    const std::string data = bytes(4 << 20);  // far past any kernel buffer
    fiberloop::run([&] {
      auto reader = spawn([&] {
        std::string got;
        char buf[65536];
        for (;;) {
          ssize_t n = ::read(p.r.get(), buf, sizeof buf);
          if (n <= 0) return got;
          got.append(buf, static_cast<std::size_t>(n));
        }
      });
      auto writer = spawn([&] {
        ssize_t n = ::write(p.w.get(), data.data(), data.size());
        p.w.reset();  // end of stream
        return n;
      });
      BOOST_TEST(await(writer) == static_cast<ssize_t>(data.size()));
      BOOST_TEST((await(reader) == data));
    });
  }
}

BOOST_AUTO_TEST_CASE(writev_and_sendmsg_resume_a_partial_send_where_it_stopped) {
  Pair p = blocking_socketpair();
  const std::string a = bytes(3 << 20), b = "middle", c = bytes(1 << 20);
  fiberloop::run([&] {
    auto reader = spawn([&] {
      std::string got;
      char buf[65536];
      while (got.size() < 2 * (a.size() + b.size() + c.size())) {
        ssize_t n = ::recv(p.r.get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
      }
      return got;
    });
    iovec iov[3] = {{const_cast<char*>(a.data()), a.size()},
                    {const_cast<char*>(b.data()), b.size()},
                    {const_cast<char*>(c.data()), c.size()}};
    BOOST_TEST(::writev(p.w.get(), iov, 3) == static_cast<ssize_t>(a.size() + b.size() + c.size()));
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 3;
    BOOST_TEST(::sendmsg(p.w.get(), &msg, 0) == static_cast<ssize_t>(a.size() + b.size() + c.size()));
    std::string whole = a + b + c;
    BOOST_TEST((await(reader) == whole + whole));
  });
}

BOOST_AUTO_TEST_CASE(so_rcvtimeo_bounds_a_hooked_read) {
  Pair p = blocking_socketpair();
  set_receive_timeout(p.r.get(), 0.1);
  fiberloop::run([&] {
    Ticker ticker;
    double t = now();
    char buf[4];
    errno = 0;
    BOOST_TEST(::read(p.r.get(), buf, sizeof buf) == -1);
    BOOST_TEST(errno == EAGAIN);
    BOOST_TEST(now() - t >= 0.1 - 1e-3);
    BOOST_TEST(now() - t < 2.0);
    BOOST_TEST(ticker.ticks > 5);
    // And the socket works on: nothing was lost or left armed.
    BOOST_TEST(::write(p.w.get(), "ok", 2) == 2);
    BOOST_TEST(::recv(p.r.get(), buf, sizeof buf, 0) == 2);
  });
}

BOOST_AUTO_TEST_CASE(recv_msg_waitall_waits_for_every_byte) {
  Pair p = blocking_socketpair();
  fiberloop::run([&] {
    auto reader = spawn([&] {
      char buf[10];
      ssize_t n = ::recv(p.r.get(), buf, sizeof buf, MSG_WAITALL);
      return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    });
    for (const char* part : {"0123", "456", "789"}) {
      fiberloop::sleep(0.01);
      BOOST_TEST(::send(p.w.get(), part, std::strlen(part), 0) > 0);
    }
    BOOST_TEST(await(reader) == "0123456789");
  });
}

BOOST_AUTO_TEST_CASE(poll_and_select_wait_on_the_loop) {
  Pair a = blocking_socketpair(), b = blocking_pipe(), c = blocking_socketpair();
  fiberloop::run([&] {
    Ticker ticker;
    // Nothing ready: the timeout, on the loop.
    pollfd none[2] = {{a.r.get(), POLLIN, 0}, {b.r.get(), POLLIN, 0}};
    double t = now();
    BOOST_TEST(::poll(none, 2, 100) == 0);
    BOOST_TEST(now() - t >= 0.1 - 1e-3);
    long during = ticker.ticks;
    BOOST_TEST(during > 5);
    // One of three becomes ready while the poll waits; a negative fd is ignored.
    auto writer = spawn([&] {
      fiberloop::sleep(0.05);
      return ::write(b.w.get(), "x", 1);
    });
    pollfd three[4] = {{a.r.get(), POLLIN, 0}, {-1, POLLIN, 0}, {b.r.get(), POLLIN, 0},
                       {c.r.get(), POLLIN | POLLPRI, 0}};
    BOOST_TEST(::poll(three, 4, 5000) == 1);
    BOOST_TEST(three[2].revents == POLLIN);
    BOOST_TEST(three[0].revents == 0);
    BOOST_TEST(await(writer) == 1);
    // The same fd twice, asking different things.
    pollfd twice[2] = {{c.w.get(), POLLIN, 0}, {c.w.get(), POLLOUT, 0}};
    BOOST_TEST(::poll(twice, 2, 5000) == 1);
    BOOST_TEST(twice[1].revents == POLLOUT);
    // poll() with no fds is a sleep.
    t = now();
    BOOST_TEST(::poll(nullptr, 0, 50) == 0);
    BOOST_TEST(now() - t >= 0.05 - 1e-3);
    // select(): the sets come back with what is ready, the timeout with what is left.
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(a.r.get(), &rd);
    FD_SET(b.r.get(), &rd);
    timeval tv{5, 0};
    BOOST_TEST(::select(std::max(a.r.get(), b.r.get()) + 1, &rd, nullptr, nullptr, &tv) == 1);
    BOOST_TEST(FD_ISSET(b.r.get(), &rd));
    BOOST_TEST(!FD_ISSET(a.r.get(), &rd));
    BOOST_TEST(tv.tv_sec >= 4);
    FD_ZERO(&rd);
    FD_SET(a.r.get(), &rd);
    tv = {0, 50'000};
    BOOST_TEST(::select(a.r.get() + 1, &rd, nullptr, nullptr, &tv) == 0);
    BOOST_TEST(!FD_ISSET(a.r.get(), &rd));
    BOOST_TEST(ticker.ticks > during);
  });
}

BOOST_AUTO_TEST_CASE(fds_the_user_made_non_blocking_and_regular_files_pass_through) {
  Pair p = blocking_socketpair();
  BOOST_REQUIRE(::fcntl(p.r.get(), F_SETFL, ::fcntl(p.r.get(), F_GETFL) | O_NONBLOCK) == 0);
  char path[] = "/tmp/fiberloop-hooks-XXXXXX";
  Fd file(::mkstemp(path));
  BOOST_REQUIRE(file.get() >= 0);
  ::unlink(path);
  BOOST_REQUIRE(::write(file.get(), "on disk", 7) == 7);
  fiberloop::run([&] {
    auto waits = fiberloop::hooks::stats().waits;
    char buf[16];
    errno = 0;
    BOOST_TEST(::read(p.r.get(), buf, sizeof buf) == -1);  // at once, as the user asked
    BOOST_TEST(errno == EAGAIN);
    BOOST_TEST(::pread(file.get(), buf, sizeof buf, 0) == 7);
    BOOST_TEST(::lseek(file.get(), 0, SEEK_SET) == 0);
    BOOST_TEST(::read(file.get(), buf, sizeof buf) == 7);
    BOOST_TEST(std::string(buf, 7) == "on disk");
    BOOST_TEST(fiberloop::hooks::stats().waits == waits);
    // Back to blocking: the hooks follow F_SETFL, and wait again.
    BOOST_REQUIRE(::fcntl(p.r.get(), F_SETFL, ::fcntl(p.r.get(), F_GETFL) & ~O_NONBLOCK) == 0);
    auto reader = spawn([&] { return ::read(p.r.get(), buf, sizeof buf); });
    fiberloop::sleep(0.02);
    BOOST_TEST(!reader.done());
    BOOST_TEST(::write(p.w.get(), "x", 1) == 1);
    BOOST_TEST(await(reader) == 1);
    BOOST_TEST(fiberloop::hooks::stats().waits > waits);
  });
}

BOOST_AUTO_TEST_CASE(outside_a_task_every_call_is_libcs_own) {
  Pair p = blocking_socketpair();
  auto waits = fiberloop::hooks::stats().waits;
  // A plain thread blocks as it always has; no loop exists anywhere.
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    (void)!::write(p.w.get(), "thread", 6);
  });
  char buf[16];
  ssize_t n = ::read(p.r.get(), buf, sizeof buf);
  writer.join();
  BOOST_TEST(n == 6);
  BOOST_TEST(fiberloop::hooks::stats().waits == waits);
  // And from a loop's callback (not a task): libc's call.
  fiberloop::EventLoop loop;
  ssize_t in_callback = 0;
  BOOST_TEST(::write(p.w.get(), "cb", 2) == 2);
  loop.call_soon([&] { in_callback = ::read(p.r.get(), buf, sizeof buf); });
  loop.run_once();
  BOOST_TEST(in_callback == 2);
  BOOST_TEST(fiberloop::hooks::stats().waits == waits);
  loop.close();
}

BOOST_AUTO_TEST_CASE(closing_an_fd_a_task_waits_on_wakes_it_with_ebadf) {
  fiberloop::run([&] {
    Pair p = blocking_socketpair();
    int number = p.r.get();
    int result = 0, error = 0;
    auto reader = spawn([&] {
      char buf[4];
      result = static_cast<int>(::read(number, buf, sizeof buf));
      error = errno;
    });
    fiberloop::sleep(0.02);
    p.r.reset();  // close(): the hooks drop the loop's watch of the number
    await(reader);
    BOOST_TEST(result == -1);
    BOOST_TEST(error == EBADF);
    // The number's next file is watched afresh.
    Pair q = blocking_socketpair();
    BOOST_TEST((q.r.get() == number || q.w.get() == number));
    Fd& same = q.r.get() == number ? q.r : q.w;
    Fd& other = q.r.get() == number ? q.w : q.r;
    auto next = spawn([&] {
      char buf[4];
      return ::read(same.get(), buf, sizeof buf);
    });
    fiberloop::sleep(0.02);
    BOOST_TEST(::write(other.get(), "new", 3) == 3);
    BOOST_TEST(await(next) == 3);
  });
}

BOOST_AUTO_TEST_CASE(dup2_over_a_watched_number_starts_it_afresh) {
  fiberloop::run([&] {
    Pair a = blocking_socketpair(), b = blocking_socketpair();
    char buf[8];
    BOOST_TEST(::write(a.w.get(), "a", 1) == 1);
    BOOST_TEST(::read(a.r.get(), buf, 1) == 1);
    auto reader = spawn([&] { return ::read(a.r.get(), buf, sizeof buf); });  // watched now
    fiberloop::sleep(0.01);
    BOOST_TEST(::write(a.w.get(), "b", 1) == 1);
    BOOST_TEST(await(reader) == 1);
    BOOST_REQUIRE(::dup2(b.r.get(), a.r.get()) == a.r.get());  // a.r now reads b's stream
    auto again = spawn([&] { return ::read(a.r.get(), buf, sizeof buf); });
    fiberloop::sleep(0.01);
    BOOST_TEST(!again.done());
    BOOST_TEST(::write(b.w.get(), "from b", 6) == 6);
    BOOST_TEST(await(again) == 6);
    BOOST_TEST(std::string(buf, 6) == "from b");
    int copy = ::dup(b.r.get());  // a dup shares the blocking mode
    BOOST_TEST(copy >= 0);
    auto via_copy = spawn([&] { return ::read(copy, buf, sizeof buf); });
    fiberloop::sleep(0.01);
    BOOST_TEST(::write(b.w.get(), "dup", 3) == 3);
    BOOST_TEST(await(via_copy) == 3);
    ::close(copy);
  });
}

// A dup2 or dup3 that fails replaces nothing: a task waiting on the target
// number keeps its wait, and gets its data, not EBADF.
BOOST_AUTO_TEST_CASE(a_failed_dup2_leaves_a_wait_on_its_target_alone) {
  fiberloop::run([&] {
    Pair p = blocking_socketpair();
    char buf[8];
    ssize_t got = 0;
    auto reader = spawn([&] { got = ::read(p.r.get(), buf, sizeof buf); });
    fiberloop::sleep(0.01);
    BOOST_REQUIRE(!reader.done());
    errno = 0;
    BOOST_TEST(::dup2(-1, p.r.get()) == -1);
    BOOST_TEST(errno == EBADF);
    errno = 0;
    BOOST_TEST(::dup3(1 << 21, p.r.get(), O_CLOEXEC) == -1);
    BOOST_TEST(errno == EBADF);
    Pair other = blocking_socketpair();
    errno = 0;
    BOOST_TEST(::dup3(other.r.get(), p.r.get(), O_NONBLOCK) == -1);  // a flag dup3 refuses
    BOOST_TEST(errno == EINVAL);
    fiberloop::sleep(0.01);
    BOOST_TEST(!reader.done());
    BOOST_TEST(::write(p.w.get(), "kept", 4) == 4);
    await(reader);
    BOOST_TEST(got == 4);
    BOOST_TEST(std::string(buf, 4) == "kept");
  });
}

BOOST_AUTO_TEST_CASE(a_blocking_connect_and_accept_run_in_tasks_of_one_loop) {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  BOOST_REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(::listen(listener.get(), 16) == 0);
  BOOST_REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  fiberloop::run([&] {
    auto server = spawn([&] {
      Fd conn(::accept(listener.get(), nullptr, nullptr));  // blocking, in a task
      char buf[16];
      ssize_t n = ::read(conn.get(), buf, sizeof buf);
      if (n > 0) (void)!::write(conn.get(), buf, static_cast<std::size_t>(n));
      return n;
    });
    auto client = spawn([&] {
      Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return std::string("connect: ") + std::strerror(errno);
      (void)!::write(s.get(), "ping", 4);
      char buf[16];
      ssize_t n = ::read(s.get(), buf, sizeof buf);
      return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    });
    BOOST_TEST(await(client) == "ping");
    BOOST_TEST(await(server) == 4);
    // A refused connection is the error it would be outside a task.
    listener.reset();
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    errno = 0;
    BOOST_TEST(::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == -1);
    BOOST_TEST(errno == ECONNREFUSED);
  });
}

BOOST_AUTO_TEST_CASE(getaddrinfo_runs_on_the_executor) {
  fiberloop::run([] {
    auto resolves = fiberloop::hooks::stats().resolves;
    bool other_task_ran = false;
    auto other = spawn([&] { other_task_ran = true; });
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    BOOST_TEST(::getaddrinfo("localhost", "80", &hints, &res) == 0);
    BOOST_TEST(other_task_ran);  // the loop ran meanwhile
    BOOST_REQUIRE(res != nullptr);
    BOOST_TEST(res->ai_family == AF_INET);
    BOOST_TEST(ntohs(reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_port) == 80);
    ::freeaddrinfo(res);
    BOOST_TEST(fiberloop::hooks::stats().resolves == resolves + 1);
    res = nullptr;
    BOOST_TEST(::getaddrinfo("name.invalid", nullptr, nullptr, &res) != 0);  // libc's error, passed on
    BOOST_TEST(res == nullptr);
    await(other);
  });
}

BOOST_AUTO_TEST_CASE(a_cancelled_read_fails_with_ecanceled_and_loses_no_data) {
  Pair p = blocking_socketpair();
  fiberloop::run([&] {
    int result = 0, error = 0;
    auto reader = spawn([&] {
      char buf[8];
      result = static_cast<int>(::read(p.r.get(), buf, sizeof buf));
      error = errno;
      fiberloop::sleep(0);  // raises the cancellation the C call could not
      return 1;
    });
    fiberloop::sleep(0.02);
    reader.cancel();
    BOOST_CHECK_THROW(await(reader), fiberloop::CancelledError);
    BOOST_TEST(result == -1);
    BOOST_TEST(error == ECANCELED);
    BOOST_TEST(fiberloop::hooks::stats().cancelled > 0);
    // The socket is whole: a later reader gets what is written next.
    BOOST_TEST(::write(p.w.get(), "after", 5) == 5);
    auto next = spawn([&] {
      char buf[8];
      ssize_t n = ::read(p.r.get(), buf, sizeof buf);
      return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    });
    BOOST_TEST(await(next) == "after");
  });
}

BOOST_AUTO_TEST_CASE(a_timeout_around_a_hooked_call_leaves_no_cancellation_behind) {
  Pair p = blocking_socketpair();
  fiberloop::run([&] {
    int result = 0, error = 0;
    fiberloop::Timeout t = fiberloop::timeout(0.05);
    try {
      char buf[8];
      result = static_cast<int>(::read(p.r.get(), buf, sizeof buf));
      error = errno;
      t.exit();
    } catch (...) {
      t.exit(std::current_exception());
    }
    BOOST_TEST(t.expired());
    BOOST_TEST(result == -1);
    BOOST_TEST(error == ECANCELED);
    // The scope took its cancellation back: the task waits on normally.
    BOOST_CHECK_NO_THROW(fiberloop::sleep(0.01));
    BOOST_TEST(fiberloop::current_task()->cancelling() == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_task_that_never_waits_on_ready_data_still_lets_others_run) {
  Pair p = blocking_socketpair();
  const std::string data = bytes(100000);
  BOOST_REQUIRE(::write(p.w.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  fiberloop::run([&] {
    Ticker ticker;
    fiberloop::sleep(0.002);
    long before = ticker.ticks;
    char c;
    for (std::size_t i = 0; i < data.size(); ++i) BOOST_REQUIRE(::read(p.r.get(), &c, 1) == 1);
    fiberloop::sleep(0);
    BOOST_TEST(ticker.ticks > before);  // the cooperative budget yielded on the way
  });
}

BOOST_AUTO_TEST_CASE(bad_fds_and_sizes_get_libcs_errors_in_a_task) {
  fiberloop::run([] {
    char buf[4];
    errno = 0;
    BOOST_TEST(::read(-1, buf, sizeof buf) == -1);
    BOOST_TEST(errno == EBADF);
    errno = 0;
    BOOST_TEST(::write(1 << 21, buf, sizeof buf) == -1);  // past the fd table: libc's call
    BOOST_TEST(errno == EBADF);
    Pair p = blocking_socketpair();
    errno = 0;
    volatile int negative_count = -1;  // volatile: the compiler would refuse the call
    BOOST_TEST(::writev(p.w.get(), nullptr, negative_count) == -1);
    BOOST_TEST(errno == EINVAL);
    fd_set rd;
    FD_ZERO(&rd);
    errno = 0;
    BOOST_TEST(::select(-1, &rd, nullptr, nullptr, nullptr) == -1);
    BOOST_TEST(errno == EINVAL);
// ASan's and TSan's own poll() read all 2^40 entries before ours is called.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    errno = 0;
    volatile nfds_t huge = static_cast<nfds_t>(1) << 40;
    pollfd one{p.r.get(), POLLIN, 0};
    BOOST_TEST(::poll(&one, huge, 10) == -1);
    BOOST_TEST(errno == EINVAL);
#endif
    // And the loop and the fds work on.
    BOOST_TEST(::write(p.w.get(), "ok", 2) == 2);
    BOOST_TEST(::read(p.r.get(), buf, sizeof buf) == 2);
  });
}

// Once warm, a hooked read that waits, the write that answers it and a
// hooked sleep make no heap allocation, as fiberloop's own socket calls
// (alloc_test.cpp): the waits are the loop's pooled ones. Not in a
// sanitized build (alloc_test is not built there either).
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
BOOST_AUTO_TEST_CASE(hooked_waits_make_no_heap_allocation,
                     *boost::unit_test::precondition(not_under_valgrind)) {
  Pair p = blocking_socketpair();
  fiberloop::run([&] {
    int near = p.r.get(), far = p.w.get();
    auto echo = spawn([far] {
      char c = 0;
      while (::read(far, &c, 1) == 1 && c != 'q') {
        if (::write(far, &c, 1) != 1) return;
      }
    });
    int wrong = 0;
    auto round_trip = [&] {
      char c = 'x';
      if (::write(near, &c, 1) != 1) ++wrong;
      c = 0;
      if (::read(near, &c, 1) != 1 || c != 'x') ++wrong;  // waits: the echo runs meanwhile
      std::this_thread::sleep_for(std::chrono::microseconds(1));
    };
    auto waits = fiberloop::hooks::stats().waits;
    auto sleeps = fiberloop::hooks::stats().sleeps;
    HeapUse use = steady_state_heap_use(round_trip);
    BOOST_TEST(wrong == 0);
    // Every round trip waited twice (our read, the echo's) and slept once:
    // the counted region went through the hooks' waits, not around them.
    BOOST_TEST(fiberloop::hooks::stats().waits - waits >= 2u * (kWarmup + kCounted));
    BOOST_TEST(fiberloop::hooks::stats().sleeps - sleeps >= std::uint64_t{kWarmup + kCounted});
    CHECK_NO_HEAP_USE(use);
    BOOST_TEST(::write(near, "q", 1) == 1);
    await(echo);
  });
}
#endif
