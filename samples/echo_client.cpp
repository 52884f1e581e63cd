// echo_client PORT [CONNECTIONS] [MESSAGES]: opens CONNECTIONS connections
// to an echo server on 127.0.0.1:PORT, each sending MESSAGES 64-byte
// messages one at a time and checking every echo.
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>
#include <vector>

namespace net = fiberloop::net;

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    std::cerr << "usage: echo_client PORT [CONNECTIONS] [MESSAGES]\n";
    return 2;
  }
  int port = std::stoi(argv[1]);
  int connections = argc > 2 ? std::stoi(argv[2]) : 1;
  int messages = argc > 3 ? std::stoi(argv[3]) : 1000;
  int ok = fiberloop::run([&] {
    std::vector<fiberloop::Task<int>> clients;
    for (int c = 0; c < connections; ++c) {
      clients.push_back(fiberloop::spawn([=] {
        auto [reader, writer] = net::open_connection("127.0.0.1", port);
        int good = 0;
        for (int i = 0; i < messages; ++i) {
          std::string msg = "connection " + std::to_string(c) + " message " + std::to_string(i);
          msg.resize(64, '.');
          writer.write(msg);
          good += reader.readexactly(msg.size()) == msg;
        }
        writer.close();
        return good;
      }));
    }
    int total = 0;
    for (auto& t : clients) total += fiberloop::await(t);
    return total;
  });
  std::cout << "echo_client: " << ok << " of " << connections * messages << " echoes correct\n";
  return ok == connections * messages ? 0 : 1;
}
