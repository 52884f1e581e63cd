// epoll_server PORT [SECONDS]: the baseline of the echo benchmark, written as
// one would in C: one thread, level-triggered epoll, non-blocking sockets, a
// read and a write per message. Listens on 127.0.0.1:PORT and echoes every
// byte; exits after SECONDS (default: when killed).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "epoll_server: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// Conn holds what a peer sent that could not be written back yet; while it
// is non-empty the server waits for writability instead of reading.
struct Conn {
  std::string pending;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: epoll_server PORT [SECONDS]\n");
    return 2;
  }
  int port = std::atoi(argv[1]);
  double deadline = argc > 2 ? now() + std::atof(argv[2]) : -1;
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) die("bind");
  if (listen(lfd, SOMAXCONN) < 0) die("listen");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

  std::vector<Conn> conns;
  epoll_event events[256];
  char buf[65536];
  for (;;) {
    int timeout = -1;
    if (deadline >= 0) {
      double left = deadline - now();
      if (left <= 0) break;
      timeout = static_cast<int>(left * 1000) + 1;
    }
    int n = epoll_wait(ep, events, 256, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if (static_cast<size_t>(c) >= conns.size()) conns.resize(static_cast<size_t>(c) + 1);
          conns[c].pending.clear();
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      Conn& conn = conns[fd];
      bool closed = false;
      if (!conn.pending.empty()) {  // writable again: flush what is left
        ssize_t w = write(fd, conn.pending.data(), conn.pending.size());
        if (w < 0 && errno != EAGAIN) {
          closed = true;
        } else if (w > 0) {
          conn.pending.erase(0, static_cast<size_t>(w));
          if (conn.pending.empty()) {
            epoll_event cev{};
            cev.events = EPOLLIN;
            cev.data.fd = fd;
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
          }
        }
      } else {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
          closed = true;
        } else if (r > 0) {
          ssize_t w = write(fd, buf, static_cast<size_t>(r));
          if (w < 0 && errno != EAGAIN) {
            closed = true;
          } else if (w < r) {
            conn.pending.assign(buf + (w > 0 ? w : 0), buf + r);
            epoll_event cev{};
            cev.events = EPOLLOUT;
            cev.data.fd = fd;
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
          }
        }
      }
      if (closed) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        conn.pending.clear();
      }
    }
  }
  return 0;
}
