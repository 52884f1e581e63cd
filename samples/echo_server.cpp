// echo_server PORT [SECONDS] [--loops N]: echoes every byte on
// 127.0.0.1:PORT, one task per connection. Runs for SECONDS, or until SIGINT
// / SIGTERM. PORT 0 picks a free port; the first line of output says which.
// With --loops N, N loops on N threads (fiberloop::LoopGroup) each listen on
// the port (SO_REUSEPORT) and the kernel spreads the connections over them.
#include <signal.h>

#include <atomic>
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

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

// serve_on_every_loop is the server on a loop per thread. Each loop runs its
// own server and its own connections; the loops talk only at the start
// (loop 0 tells the others its port, they tell it they listen) and at a
// SIGTERM (loop 0 asks each loop to close its server).
void serve_on_every_loop(std::size_t loops, int port, double seconds) {
  fiberloop::LoopGroup group(loops);
  // Loop 0's: its port is known / every other loop listens.
  fiberloop::Event port_known, all_listening;
  std::size_t listening = 1;
  std::vector<std::optional<net::Server>> servers(loops);  // servers[i] is loop i's
  std::vector<std::atomic<int>> accepted(loops);
  try {
    group.run([&](std::size_t index) {
      auto& loop = fiberloop::get_running_loop();
      auto count_then_echo = [&accepted, index](net::StreamReader r, net::StreamWriter w) {
        accepted[index].fetch_add(1, std::memory_order_relaxed);
        echo(std::move(r), std::move(w));
      };
      // run_on(loop, fn) runs fn as a task on that loop and waits for it.
      auto& first = group.loop(0);
      int bound = index == 0 ? port : fiberloop::run_on(first, [&] {
        port_known.wait();
        return port;
      });
      servers[index] = net::start_server(count_then_echo, "127.0.0.1", bound,
                                         {.backlog = 1024, .reuse_port = true});
      if (index == 0) {
        port = servers[0]->sockets()[0].port();
        port_known.set();
        if (loops > 1) all_listening.wait();
        loop.add_signal_handler(SIGTERM, [&] {
          std::cout << "echo_server: signal " << SIGTERM << ", stopping" << std::endl;
          for (std::size_t i = 0; i < loops; ++i) {
            try {
              (void)fiberloop::submit(group.loop(i), [&servers, i] {
                if (servers[i]) servers[i]->close();
              });
            } catch (const fiberloop::RuntimeError&) {
              // That loop has ended already.
            }
          }
        });
        std::cout << "echo_server: listening on " << servers[0]->sockets()[0].to_string()
                  << " with " << loops << " loops" << std::endl;
      } else {
        fiberloop::run_on(first, [&] {
          if (++listening == loops) all_listening.set();
        });
      }
      net::Server& server = *servers[index];
      fiberloop::TimerHandle deadline;
      if (seconds >= 0) deadline = loop.call_later(seconds, [&server] { server.close(); });
      try {
        server.serve_forever();
      } catch (const fiberloop::CancelledError&) {
        // Ctrl-C: the group cancels every main task. Stop as for SIGTERM.
      }
      deadline.cancel();
      server.close();
      server.close_clients();
      server.wait_closed();
      servers[index].reset();  // a server belongs to its loop: it goes with it
    });
  } catch (const fiberloop::KeyboardInterrupt&) {
    std::cout << "echo_server: interrupted" << std::endl;
  }
  for (std::size_t i = 0; i < loops; ++i)
    std::cout << "echo_server: loop " << i << " accepted " << accepted[i] << " connections\n";
  std::cout << "echo_server: stopped" << std::endl;
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::size_t loops = 1;
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--loops") {
      loops = std::stoul(args[i + 1]);
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
      break;
    }
  }
  if (args.empty() || args.size() > 2 || loops == 0) {
    std::cerr << "usage: echo_server PORT [SECONDS] [--loops N]\n";
    return 2;
  }
  int port = std::stoi(args[0]);
  double seconds = args.size() == 2 ? std::stod(args[1]) : -1;
  if (loops > 1) {
    serve_on_every_loop(loops, port, seconds);
    return 0;
  }
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
