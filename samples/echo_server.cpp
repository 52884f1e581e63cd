// echo_server PORT [SECONDS]: echoes every byte on 127.0.0.1:PORT, one task
// per connection. Runs for SECONDS, or until SIGINT / SIGTERM. PORT 0 picks a
// free port; the first line of output says which.
#include <signal.h>

#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>

namespace net = fiberloop::net;

// echo is the whole per-connection program: read what is there, write it back.
void echo(net::StreamReader reader, net::StreamWriter writer) {
  char buf[16 * 1024];
  try {
    while (std::size_t n = reader.read_into(buf, sizeof buf)) {
      writer.write(std::string_view(buf, n));
      writer.drain();  // a client that does not read slows down only itself
    }
  } catch (const std::system_error&) {
    // reset by the peer: nothing left to do for this one
  }
  writer.close();
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: echo_server PORT [SECONDS]\n";
    return 2;
  }
  int port = std::stoi(argv[1]);
  double seconds = argc == 3 ? std::stod(argv[2]) : -1;
  fiberloop::run([&] {
    auto server = net::start_server(echo, "127.0.0.1", port, {.backlog = 1024});
    auto& loop = fiberloop::get_running_loop();
    // SIGINT and SIGTERM arrive as ordinary callbacks on the loop's thread,
    // never in signal context, so the handler may close the server; that
    // ends serve_forever() below. (Our SIGINT handler replaces run()'s
    // Ctrl-C, which would cancel this task and end in KeyboardInterrupt.)
    // Set before the "listening" line: whoever signals as soon as it reads
    // that line must find them in place.
    for (int sig : {SIGINT, SIGTERM}) {
      loop.add_signal_handler(sig, [server, sig]() mutable {
        std::cout << "echo_server: signal " << sig << ", stopping" << std::endl;
        server.close();
      });
    }
    std::cout << "echo_server: listening on " << server.sockets()[0].to_string() << std::endl;
    fiberloop::TimerHandle deadline;
    if (seconds >= 0) deadline = loop.call_later(seconds, [server]() mutable { server.close(); });
    server.serve_forever();
    deadline.cancel();
    server.close_clients();
    server.wait_closed();
    std::cout << "echo_server: stopped" << std::endl;
  });
}
