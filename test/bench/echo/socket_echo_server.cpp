// socket_echo_server PORT [SECONDS]: the echo benchmark's fiberloop contender
// on bare sockets, the like of asio_server: one task per connection, each a
// 4 KiB buffer and sock_recv_into / sock_sendall, no stream buffering. Set
// beside samples/echo_server (StreamReader / StreamWriter), it separates the
// runtime's own path from the streams' cost. Listens on 127.0.0.1:PORT; exits
// after SECONDS (default: when killed).
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstdio>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <system_error>

namespace net = fiberloop::net;

namespace {

void echo(net::Socket conn) {
  char data[4096];
  try {
    while (std::size_t n = net::sock_recv_into(conn, data, sizeof data))
      net::sock_sendall(conn, std::string_view(data, n));
  } catch (const std::system_error&) {
    // reset by the peer: nothing left to do for this one
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: socket_echo_server PORT [SECONDS]\n");
    return 2;
  }
  int port = std::atoi(argv[1]);
  double seconds = argc > 2 ? std::atof(argv[2]) : -1;
  try {
    fiberloop::run([&] {
      net::Socket listener(AF_INET, SOCK_STREAM);
      listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
      listener.bind(net::Address::ip("127.0.0.1", port));
      listener.listen(1024);
      fiberloop::TimerHandle deadline;
      if (seconds >= 0) {
        auto self = *fiberloop::current_task();
        deadline = fiberloop::get_running_loop().call_later(seconds, [self]() mutable {
          self.cancel();
        });
      }
      fiberloop::task_group([&](fiberloop::TaskGroup& connections) {
        for (;;) {
          net::Socket conn = net::sock_accept(listener).first;
          conn.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
          connections.spawn(echo, std::move(conn));
        }
      });
    });
  } catch (const fiberloop::CancelledError&) {
    // SECONDS are over: every connection was cancelled and closed
  }
  return 0;
}
