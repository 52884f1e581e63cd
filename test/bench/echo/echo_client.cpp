// echo_client: the one load generator of the echo benchmark. N connections to
// 127.0.0.1:PORT each keep one SIZE-byte message in flight (send, wait for
// the whole echo, send again) for SECONDS, on one thread with epoll.
//
//   echo_client PORT CONNECTIONS SECONDS [SERVER_PID] [SIZE]
//
// Prints one line: "round_trips=R seconds=S server_cpu=C" where C is the
// CPU time (seconds) SERVER_PID used during the same window, from
// /proc/PID/task/*/schedstat (-1 without a pid). Connecting retries for up to
// 5 s while the server starts. Exit status 1 on any error (a server that
// closes or corrupts a connection included).
#include <arpa/inet.h>
#include <dirent.h>
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
  std::fprintf(stderr, "echo_client: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// cpu_seconds(pid) sums the run time of every thread of pid (schedstat is in
// nanoseconds, finer than /proc/PID/stat's clock ticks); -1 if unreadable.
double cpu_seconds(int pid) {
  if (pid <= 0) return -1;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  double total = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string path = dir + "/" + e->d_name + "/schedstat";
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      unsigned long long ns = 0;
      if (std::fscanf(f, "%llu", &ns) == 1) total += static_cast<double>(ns) / 1e9;
      std::fclose(f);
    }
  }
  closedir(d);
  return total;
}

int connect_with_retry(int port, double give_up) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (;;) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      return fd;
    }
    int err = errno;
    close(fd);
    if (err != ECONNREFUSED || now() > give_up) {
      errno = err;
      die("connect");
    }
    usleep(10000);
  }
}

struct Conn {
  int fd;
  size_t received = 0;  // bytes of the current echo received so far
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: echo_client PORT CONNECTIONS SECONDS [SERVER_PID] [SIZE]\n");
    return 2;
  }
  int port = std::atoi(argv[1]);
  int nconn = std::atoi(argv[2]);
  double seconds = std::atof(argv[3]);
  int server_pid = argc > 4 ? std::atoi(argv[4]) : 0;
  size_t size = argc > 5 ? static_cast<size_t>(std::atoi(argv[5])) : 64;
  if (port <= 0 || nconn <= 0 || seconds <= 0 || size == 0 || size > 4096) {
    std::fprintf(stderr, "echo_client: bad arguments\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  std::string message(size, 'x');
  for (size_t i = 0; i < size; ++i) message[i] = static_cast<char>('a' + i % 26);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<Conn> conns;
  double give_up = now() + 5.0;
  for (int i = 0; i < nconn; ++i) {
    int fd = connect_with_retry(port, give_up);
    conns.push_back(Conn{fd});
  }
  for (size_t i = 0; i < conns.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) die("epoll_ctl");
    if (write(conns[i].fd, message.data(), size) != static_cast<ssize_t>(size)) die("write");
  }

  // A short warm-up, then the measured window.
  const double warmup = 0.2;
  double start = now();
  double t0 = -1, cpu0 = -1, end = start + warmup + seconds;
  unsigned long long trips = 0, trips0 = 0;
  epoll_event events[512];
  char buf[4096];
  for (;;) {
    double t = now();
    if (t0 < 0 && t >= start + warmup) {
      t0 = t;
      cpu0 = cpu_seconds(server_pid);
      trips0 = trips;
    }
    if (t >= end) break;
    int n = epoll_wait(ep, events, 512, 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      Conn& c = conns[events[i].data.u64];
      ssize_t r = read(c.fd, buf, sizeof buf);
      if (r == 0) {
        std::fprintf(stderr, "echo_client: the server closed a connection\n");
        return 1;
      }
      if (r < 0) {
        if (errno == EAGAIN) continue;
        die("read");
      }
      if (c.received + static_cast<size_t>(r) > size ||
          std::memcmp(buf, message.data() + c.received, static_cast<size_t>(r)) != 0) {
        std::fprintf(stderr, "echo_client: the echo differs from the message\n");
        return 1;
      }
      c.received += static_cast<size_t>(r);
      if (c.received == size) {
        c.received = 0;
        ++trips;
        if (write(c.fd, message.data(), size) != static_cast<ssize_t>(size)) die("write");
      }
    }
  }
  double t1 = now();
  double cpu1 = cpu_seconds(server_pid);
  double cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
  std::printf("round_trips=%llu seconds=%.6f server_cpu=%.6f\n", trips - trips0, t1 - t0, cpu);
  for (Conn& c : conns) close(c.fd);
  return 0;
}
