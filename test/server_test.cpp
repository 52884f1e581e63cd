// start_server / start_unix_server and Server (net/server.hpp) over loopback.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <deque>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"
#include "stall_guard.hpp"

using fiberloop::LimitOverrunError;
using net::Server;
using net::Socket;
using net::StreamReader;
using net::StreamWriter;

namespace {

struct ServerFixture : LoopFixture {
  ServerFixture() { ::signal(SIGPIPE, SIG_DFL); }
};

// echo_lines echoes each line; an over-long line gets an error line and
// the connection is closed.
void echo_lines(StreamReader reader, StreamWriter writer) {
  try {
    for (;;) {
      std::string line = reader.readline();
      if (line.empty()) break;
      writer.write(line);
      writer.drain();
    }
  } catch (const LimitOverrunError&) {
    writer.write("error: line too long\n");
  } catch (const std::system_error&) {
    // reset by the peer: nothing to answer
  }
  writer.close();
}

std::string ask(int port, const std::string& line) {
  auto [r, w] = net::open_connection("127.0.0.1", port);
  w.write(line);
  std::string back = r.readline();
  w.close();
  return back;
}

// bounded_ask(port, line) is ask() that gives up after 2 s ("<timeout>"); a
// connection closed or reset by the server answers "" or "<reset>".
std::string bounded_ask(int port, const std::string& line) {
  try {
    return fiberloop::wait_for([&] { return ask(port, line); }, 2.0);
  } catch (const fiberloop::TimeoutError&) {
    return "<timeout>";
  } catch (const std::system_error&) {
    return "<reset>";
  }
}

// Injected accept errors (the net::detail::accept4_function seam): each entry
// fails one accept4 call with its errno. With `consume`, it first takes a
// real pending connection and closes it, as a connection that died in the
// queue does (accept(2): "Linux passes already-pending network errors on the
// new socket as an error code from accept()").
struct Injected {
  int err;
  bool consume;
};
std::deque<Injected> injected;
int injected_accepts = 0;  // accept4 calls that failed as injected

int injecting_accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (!injected.empty()) {
    Injected next = injected.front();
    if (next.consume) {
      int conn = ::accept4(fd, addr, len, flags);
      if (conn < 0) return conn;  // nothing pending yet (EAGAIN): the error comes with the next one
      ::close(conn);
    }
    injected.pop_front();
    ++injected_accepts;
    errno = next.err;
    return -1;
  }
  return ::accept4(fd, addr, len, flags);
}

struct AcceptInjection {
  AcceptInjection() {
    injected.clear();
    injected_accepts = 0;
    net::detail::accept4_function() = injecting_accept4;
  }
  ~AcceptInjection() {
    net::detail::accept4_function() = nullptr;
    injected.clear();
  }
};

// listening_fd(address) is this process's listening socket bound to address.
int listening_fd(const net::Address& address) {
  for (int fd = 0; fd < 65536; ++fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      if (errno == EBADF && fd > 4096) break;
      continue;
    }
    int listening = 0;
    socklen_t ol = sizeof listening;
    if (net::Address(reinterpret_cast<sockaddr*>(&ss), len) == address &&
        ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) == 0 && listening)
      return fd;
  }
  return -1;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(server, ServerFixture)

BOOST_AUTO_TEST_CASE(port_zero_picks_a_port_and_serves) {
  run([] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    BOOST_TEST(server.is_serving());
    BOOST_REQUIRE(server.sockets().size() == 1u);
    int port = server.sockets()[0].port();
    BOOST_TEST(port > 0);
    BOOST_TEST(ask(port, "hello\n") == "hello\n");
    BOOST_TEST(ask(port, "again\n") == "again\n");
    server.close();
    BOOST_TEST(!server.is_serving());
    BOOST_TEST(server.sockets().empty());
    server.wait_closed();
    BOOST_CHECK_THROW(net::open_connection("127.0.0.1", port), std::system_error);
  });
}

BOOST_AUTO_TEST_CASE(a_server_keeps_serving_past_bad_clients) {
  run([] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.stream = {.limit = 1024}});
    int port = server.sockets()[0].port();
    // Connects and sends nothing.
    auto [silent_r, silent_w] = net::open_connection("127.0.0.1", port);
    // Disconnects in the middle of a line.
    {
      auto [r, w] = net::open_connection("127.0.0.1", port);
      w.write("half a li");
      w.close();
      w.wait_closed();
    }
    // Sends an over-long line.
    auto [long_r, long_w] = net::open_connection("127.0.0.1", port);
    long_w.write(std::string(100 * 1024, 'L'));
    // Resets.
    {
      Socket s(AF_INET, SOCK_STREAM);
      net::sock_connect(s, net::Address::ip("127.0.0.1", port));
      net::sock_sendall(s, "about to reset\n");
      reset_on_close(s.fd());
    }
    // Meanwhile everybody else is served.
    for (int i = 0; i < 10; ++i) {
      std::string line = "client " + std::to_string(i) + "\n";
      BOOST_TEST(ask(port, line) == line);
    }
    BOOST_TEST(long_r.readline() == "error: line too long\n");
    // The silent one is still connected and still answered.
    silent_w.write("late but fine\n");
    BOOST_TEST(silent_r.readline() == "late but fine\n");
    silent_w.close();
    long_w.close();
    server.close();
    server.wait_closed();
    BOOST_TEST(server.connection_count() == 0u);
  });
}

BOOST_AUTO_TEST_CASE(a_thousand_concurrent_connections_through_one_loop) {
  constexpr int kClients = 1000;
  if (!enough_fds_for(kClients)) return;
  int served = run(
      [] {
        Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.backlog = kClients});
        int port = server.sockets()[0].port();
        std::vector<fiberloop::Task<int>> clients;
        int connected = 0;
        bool all_connected = false;
        auto gate = fiberloop::get_running_loop().create_future<void>();
        for (int i = 0; i < kClients; ++i) {
          clients.push_back(fiberloop::spawn([&, i] {
            auto [r, w] = net::open_connection("127.0.0.1", port);
            if (++connected == kClients) gate.set_result();
            // Everybody is connected before anybody talks: 1000 open at once.
            fiberloop::await(gate);
            std::string line = "line from " + std::to_string(i) + "\n";
            w.write(line);
            bool ok = r.readline() == line;
            w.close();
            return ok ? 1 : 0;
          }));
        }
        fiberloop::await(gate);
        all_connected = server.connection_count() <= static_cast<std::size_t>(kClients);
        BOOST_TEST(all_connected);
        int ok = 0;
        for (auto& c : clients) ok += fiberloop::await(c);
        server.close();
        server.wait_closed();
        return ok;
      },
      60.0);
  BOOST_TEST(served == kClients);
}

BOOST_AUTO_TEST_CASE(close_leaves_connections_and_wait_closed_waits_for_them) {
  run([this] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    auto [r, w] = net::open_connection("127.0.0.1", port);
    w.write("before\n");
    BOOST_TEST(r.readline() == "before\n");
    server.close();
    bool waited = false;
    auto waiter = fiberloop::spawn([&] {
      server.wait_closed();
      waited = true;
    });
    fiberloop::sleep(0.01);
    BOOST_TEST(!waited);  // the connection is still open (asyncio 3.12+)
    w.write("after close\n");
    BOOST_TEST(r.readline() == "after close\n");  // and still served (3.13)
    w.close();
    fiberloop::await(waiter);
    BOOST_TEST(waited);
    (void)loop;
  });
}

BOOST_AUTO_TEST_CASE(close_clients_ends_idle_handlers_and_abort_clients_drops_them) {
  run([] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    auto [r1, w1] = net::open_connection("127.0.0.1", port);
    auto [r2, w2] = net::open_connection("127.0.0.1", port);
    w1.write("x\n");
    BOOST_TEST(r1.readline() == "x\n");
    w2.write("y\n");
    BOOST_TEST(r2.readline() == "y\n");
    BOOST_TEST(server.connection_count() == 2u);
    server.close();
    server.close_clients();
    BOOST_TEST(r1.read() == "");  // the server side closed
    BOOST_TEST(r2.read() == "");
    server.wait_closed();
    BOOST_TEST(server.connection_count() == 0u);

    Server second = net::start_server(echo_lines, "127.0.0.1", 0);
    auto [r3, w3] = net::open_connection("127.0.0.1", second.sockets()[0].port());
    w3.write("z\n");
    BOOST_TEST(r3.readline() == "z\n");
    second.abort_clients();
    BOOST_TEST(r3.read() == "");
    second.close();
    second.wait_closed();
  });
}

BOOST_AUTO_TEST_CASE(serve_forever_returns_once_closed) {
  run([] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    fiberloop::get_running_loop().call_later(0.01, [server]() mutable { server.close(); });
    server.serve_forever();
    BOOST_TEST(!server.is_serving());
    server.serve_forever();  // closed already: returns at once
    server.wait_closed();
  });
}

BOOST_AUTO_TEST_CASE(address_in_use_and_reuse_port) {
  run([] {
    Server a = net::start_server(echo_lines, "127.0.0.1", 0);
    int port = a.sockets()[0].port();
    BOOST_CHECK_EXCEPTION(net::start_server(echo_lines, "127.0.0.1", port), std::system_error,
                          [&](const std::system_error& e) {
                            return e.code().value() == EADDRINUSE &&
                                   std::string(e.what()).find(
                                       "127.0.0.1:" + std::to_string(port)) != std::string::npos;
                          });
    BOOST_CHECK_THROW(net::start_server(echo_lines, "bad host name", 0), std::invalid_argument);
    a.close();
    a.wait_closed();
    Server b = net::start_server(echo_lines, "127.0.0.1", 0, {.reuse_port = true});
    int shared = b.sockets()[0].port();
    Server c = net::start_server(echo_lines, "127.0.0.1", shared, {.reuse_port = true});
    BOOST_TEST(c.sockets()[0].port() == shared);
    BOOST_TEST(ask(shared, "either\n") == "either\n");
    b.close();
    c.close();
    b.wait_closed();
    c.wait_closed();
  });
}

BOOST_AUTO_TEST_CASE(unix_server_and_its_socket_file) {
  std::string path = "/tmp/fiberloop_server_test_" + std::to_string(::getpid());
  run([&] {
    Server server = net::start_unix_server(echo_lines, path);
    BOOST_TEST(server.sockets()[0].to_string() == path);
    auto [r, w] = net::open_unix_connection(path);
    w.write("unix line\n");
    BOOST_TEST(r.readline() == "unix line\n");
    w.close();
    server.close();
    server.wait_closed();
    BOOST_TEST(::access(path.c_str(), F_OK) != 0);  // removed on close (3.13)
  });
}

BOOST_AUTO_TEST_CASE(the_library_s_tasks_carry_names) {
  // all_tasks() of a serving loop: the acceptors and the connection handlers
  // say what they are, not "Task-N".
  std::string path = "/tmp/fiberloop_server_names_" + std::to_string(::getpid());
  run([&] {
    Server tcp = net::start_server(echo_lines, "127.0.0.1", 0);
    Server unix_server = net::start_unix_server(echo_lines, path);
    std::string listening = tcp.sockets()[0].to_string();
    auto [r, w] = net::open_connection("127.0.0.1", tcp.sockets()[0].port());
    auto [ur, uw] = net::open_unix_connection(path);
    w.write("hi\n");
    BOOST_TEST(r.readline() == "hi\n");  // its handler runs
    uw.write("hi\n");
    BOOST_TEST(ur.readline() == "hi\n");
    std::string client = w.get_extra_info("sockname")->to_string();

    std::vector<std::string> names;
    auto self = fiberloop::current_task();
    for (const auto& t : fiberloop::get_running_loop().all_tasks()) {
      if (t == *self) continue;
      names.push_back(t.get_name());
    }
    auto has = [&](const std::string& n) {
      return std::find(names.begin(), names.end(), n) != names.end();
    };
    BOOST_TEST(has("fiberloop.server accept " + listening), "names: " << LoopFixture::join(names));
    BOOST_TEST(has("fiberloop.server connection " + client), "names: " << LoopFixture::join(names));
    BOOST_TEST(has("fiberloop.server accept " + path), "names: " << LoopFixture::join(names));
    BOOST_TEST(has("fiberloop.server connection " + path), "names: " << LoopFixture::join(names));
    BOOST_TEST(names.size() == 4u, "names: " << LoopFixture::join(names));
    for (const std::string& n : names) BOOST_TEST(n.rfind("fiberloop.", 0) == 0u, n);

    w.close();
    uw.close();
    tcp.close();
    unix_server.close();
    tcp.wait_closed();
    unix_server.wait_closed();
  });
}

BOOST_AUTO_TEST_CASE(a_handler_that_throws_is_reported_and_its_connection_closed) {
  expected_reports = 1;
  run([] {
    Server server = net::start_server(
        [](StreamReader r, StreamWriter) {
          if (r.readline() == "boom\n") throw std::runtime_error("handler failed");
        },
        "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    auto [r, w] = net::open_connection("127.0.0.1", port);
    w.write("boom\n");
    BOOST_TEST(r.read() == "");  // closed
    auto [r2, w2] = net::open_connection("127.0.0.1", port);
    w2.write("fine\n");
    w2.close();
    server.close();
    server.wait_closed();
  });
  BOOST_REQUIRE(reports.size() == 1u);
  BOOST_TEST(reports[0] == "Unhandled exception in client_connected_cb");
}

BOOST_AUTO_TEST_CASE(a_stream_echo_round_trip_costs_one_poll_one_read_one_write) {
  // The echo_server sample's handler; the client is a blocking socket on
  // another thread, so this thread's counters see the server side only.
  constexpr int kWarmup = 200, kCounted = 2000;
  std::atomic<int> port{0};
  std::atomic<bool> client_ok{false};
  fiberloop::detail::SyscallCounts counted{};
  std::thread client([&] {
    for (int i = 0; i < 500 && port == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    client_ok = blocking_echo_rounds(net::Address::ip("127.0.0.1", port), kWarmup + kCounted);
  });
  run(
      [&] {
        auto done = fiberloop::get_running_loop().create_future<void>();
        Server server = net::start_server(
            [&](StreamReader reader, StreamWriter writer) {
              char buf[16 * 1024];
              std::size_t bytes = 0;
              while (std::size_t n = reader.read_into(buf, sizeof buf)) {
                writer.write(std::string_view(buf, n));
                writer.drain();
                bytes += n;
                if (bytes == kWarmup * 64) fiberloop::detail::syscall_counts() = {};
                if (bytes == (kWarmup + kCounted) * 64)
                  counted = fiberloop::detail::syscall_counts();
              }
              writer.close();
              done.set_result();
            },
            "127.0.0.1", 0);
        port = server.sockets()[0].port();
        fiberloop::await(done);
        server.close();
        server.wait_closed();
      },
      30.0);
  client.join();
  BOOST_TEST(client_ok.load());
  double per_rt = static_cast<double>(counted.total()) / kCounted;
  BOOST_TEST_MESSAGE("streams: syscalls per round trip: "
                     << per_rt << " (polls " << counted.polls << ", reads " << counted.reads
                     << ", writes " << counted.writes << ", epoll_ctl " << counted.ctls << ")");
  BOOST_TEST(counted.ctls == 0u);
  BOOST_TEST(per_rt <= 3.05);
}

BOOST_AUTO_TEST_CASE(closing_the_loop_under_a_busy_server_unwinds_it_cleanly) {
  // The acceptor, the handler (blocked in drain: the client never reads) and
  // its background writer are pending when the loop closes.
  expected_reports = 3;
  net::StreamReader client_reader;
  net::StreamWriter client_writer;
  net::Server server;
  loop.run_until_complete(loop.create_task([&] {
    server = net::start_server(
        [](StreamReader, StreamWriter w) {
          std::string chunk(1 << 20, 'b');
          for (;;) {
            w.write(chunk);
            w.drain();
          }
        },
        "127.0.0.1", 0);
    std::tie(client_reader, client_writer) =
        net::open_connection("127.0.0.1", server.sockets()[0].port());
    fiberloop::sleep(0.05);
  }));
  BOOST_TEST(server.connection_count() == 1u);
  loop.close();
  for (const auto& r : reports) BOOST_TEST(r == "Task was destroyed but it is pending!");
  server.close();  // after the loop closed: harmless
  BOOST_TEST(!server.is_serving());
}

BOOST_AUTO_TEST_CASE(pending_network_errors_from_accept_are_retried_silently) {
  // accept(2): ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
  // EOPNOTSUPP, ENETUNREACH (and EPERM, a firewall rule) belong to one
  // connection that died in the queue: "treated like EAGAIN by retrying".
  AcceptInjection inject;
  run([&] {
    StallGuard guard(loop);
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    for (int err : {ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP,
                    ENETUNREACH, EPERM, ECONNABORTED, EINTR}) {
      injected.push_back({err, true});
      std::string lost = bounded_ask(port, "lost\n");
      BOOST_TEST((lost == "" || lost == "<reset>"), "errno " << err << ": " << lost);
      std::string next = bounded_ask(port, "next\n");
      BOOST_TEST(next == "next\n", "errno " << err);
      BOOST_TEST(server.is_serving());
      if (next != "next\n") break;
    }
    BOOST_TEST(injected_accepts == 11);
    server.close();
    server.wait_closed();
    BOOST_TEST(guard.max_gap() <= 1.0);
  });
}

BOOST_AUTO_TEST_CASE(another_accept_error_is_reported_once_and_serving_goes_on) {
  expected_reports = 2;
  AcceptInjection inject;
  run([&] {
    StallGuard guard(loop);
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    // One error, with the connection it belonged to.
    injected.push_back({EIO, true});
    std::string lost = bounded_ask(port, "lost\n");
    BOOST_TEST((lost == "" || lost == "<reset>"), lost);
    BOOST_TEST(bounded_ask(port, "next\n") == "next\n");
    BOOST_TEST(reports.size() == 1u);
    BOOST_TEST(server.is_serving());
    // The same error many times in a row: one report, the loop never stalls,
    // and the connection waiting behind the errors is served.
    for (int i = 0; i < 6; ++i) injected.push_back({EIO, false});
    BOOST_TEST(bounded_ask(port, "behind the errors\n") == "behind the errors\n");
    BOOST_TEST(injected.empty());
    BOOST_TEST(reports.size() == 2u);
    BOOST_TEST(server.is_serving());
    BOOST_TEST(bounded_ask(port, "after\n") == "after\n");
    server.close();
    server.wait_closed();
    BOOST_TEST(guard.max_gap() <= 1.0);
  });
  for (const std::string& r : reports) BOOST_TEST(r == "Socket accept failed");
}

BOOST_AUTO_TEST_CASE(running_out_of_fds_pauses_accepting_for_a_second) {
  // EMFILE (asyncio: "socket.accept() out of system resource"): reported,
  // accepting pauses 1 s so that connections can close, then goes on.
  expected_reports = 1;
  AcceptInjection inject;
  run([&] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    injected.push_back({EMFILE, false});
    double start = loop.time();
    BOOST_TEST(fiberloop::wait_for([&] { return ask(port, "patience\n"); }, 3.0) == "patience\n");
    BOOST_TEST(loop.time() - start >= 0.9);
    BOOST_TEST(server.is_serving());
    server.close();
    server.wait_closed();
  });
  BOOST_REQUIRE(reports.size() == 1u);
  BOOST_TEST(reports[0] == "Socket accept failed");
}

BOOST_AUTO_TEST_CASE(a_listener_that_cannot_accept_any_more_stops_the_server_visibly) {
  // shutdown(SHUT_RD) on the listening socket: every accept says EINVAL from
  // then on. The server reports it once and stops: is_serving() is false and
  // serve_forever() returns; accepted connections and the loop go on.
  expected_reports = 1;
  run([&] {
    StallGuard guard(loop);
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    net::Address at = server.sockets()[0];
    auto [r, w] = net::open_connection("127.0.0.1", at.port());
    w.write("first\n");
    BOOST_TEST(r.readline() == "first\n");
    int fd = listening_fd(at);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(::shutdown(fd, SHUT_RD) == 0);
    bool returned = false;
    try {
      fiberloop::wait_for([&] { server.serve_forever(); }, 2.0);
      returned = true;
    } catch (const fiberloop::TimeoutError&) {
    }
    BOOST_TEST(returned);
    BOOST_TEST(!server.is_serving());
    BOOST_TEST(server.sockets().empty());
    w.write("still served\n");
    BOOST_TEST(fiberloop::wait_for([&] { return r.readline(); }, 2.0) == "still served\n");
    w.close();
    fiberloop::wait_for([&] { server.wait_closed(); }, 2.0);
    BOOST_TEST(server.connection_count() == 0u);
    BOOST_TEST(guard.max_gap() <= 1.0);
  });
  BOOST_REQUIRE(reports.size() == 1u);
  BOOST_TEST(reports[0].rfind("Socket accept failed", 0) == 0u, reports[0]);
}

namespace {
int handler_failures_left = 0;
void failing_handler_start() {
  if (handler_failures_left > 0) {
    --handler_failures_left;
    throw std::system_error(ENOMEM, std::generic_category(), "mmap for a fiber stack");
  }
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_handler_task_that_cannot_be_created_is_reported_and_its_connection_closed) {
  expected_reports = 1;
  handler_failures_left = 1;
  net::detail::before_handler_task() = failing_handler_start;
  struct Reset {
    ~Reset() { net::detail::before_handler_task() = nullptr; }
  } reset;
  run([&] {
    StallGuard guard(loop);
    Server server = net::start_server(echo_lines, "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    std::string lost = bounded_ask(port, "lost\n");
    BOOST_TEST((lost == "" || lost == "<reset>"), lost);
    BOOST_TEST(handler_failures_left == 0);
    BOOST_TEST(bounded_ask(port, "next\n") == "next\n");
    BOOST_TEST(server.is_serving());
    server.close();
    fiberloop::wait_for([&] { server.wait_closed(); }, 2.0);  // the lost one is not counted
    BOOST_TEST(server.connection_count() == 0u);
    BOOST_TEST(guard.max_gap() <= 1.0);
  });
  BOOST_REQUIRE(reports.size() == 1u);
  BOOST_TEST(reports[0] == "Could not start client_connected_cb for a connection");
}

BOOST_AUTO_TEST_SUITE_END()
