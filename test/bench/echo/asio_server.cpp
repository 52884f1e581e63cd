// asio_server PORT [SECONDS]: the echo benchmark's Boost.Asio contender,
// callbacks on one io_context thread, as Asio's own async_tcp_echo_server
// example. Listens on 127.0.0.1:PORT; exits after SECONDS (default: when killed).
// Boost 1.74's Asio uses std::exchange without including <utility> (C++20 mode).
#include <utility>
// (keep the line above first)
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket socket) : socket_(std::move(socket)) {}
  void start() { read(); }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(data_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              if (!ec) self->write(n);
                            });
  }
  void write(size_t n) {
    asio::async_write(socket_, asio::buffer(data_, n),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket socket_;
  char data_[4096];
};

void accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](boost::system::error_code ec, tcp::socket socket) {
    if (!ec) {
      socket.set_option(tcp::no_delay(true));
      std::make_shared<Session>(std::move(socket))->start();
    }
    accept(acceptor);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: asio_server PORT [SECONDS]\n");
    return 2;
  }
  auto port = static_cast<unsigned short>(std::atoi(argv[1]));
  asio::io_context io(1);
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), port));
  accept(acceptor);
  asio::steady_timer stop(io);
  if (argc > 2) {
    stop.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(std::atof(argv[2]))));
    stop.async_wait([&io](boost::system::error_code) { io.stop(); });
  }
  io.run();
  return 0;
}
