// http_hello PORT [SECONDS]: a minimal HTTP/1.1 server on 127.0.0.1:PORT
// with keep-alive (HTTP/1.1's default; HTTP/1.0's "Connection: keep-alive",
// as `ab -k` sends), as plain sequential code. Runs for SECONDS, or until
// SIGINT / SIGTERM. PORT 0 picks a free port; the first line says which.
//
// The server itself, one task per connection parsing its requests with
// zero-copy readline_view(), is in http_serve.hpp: samples/https_hello.cpp
// serves the same handler over TLS.
#include <iostream>
#include <string>

#include "http_serve.hpp"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: http_hello PORT [SECONDS]\n";
    return 2;
  }
  int port = std::stoi(argv[1]);
  double seconds = argc == 3 ? std::stod(argv[2]) : -1;
  http::run("http_hello", port, seconds);
}
