// https_hello PORT CERT KEY [SECONDS]: http_hello over TLS, on
// 127.0.0.1:PORT, with the certificate chain CERT and its private key KEY
// (PEM). Runs for SECONDS, or until SIGINT / SIGTERM. PORT 0 picks a free
// port; the first line says which.
//
//   test/tls/make_certs.sh /tmp/certs
//   build/samples/https_hello 8443 /tmp/certs/server.pem /tmp/certs/server.key
//   curl --cacert /tmp/certs/ca.pem https://localhost:8443/
//
// TLS is a property of the connection, not of the handler: the server runs
// each connection's handshake before it starts the handler, which then
// reads and writes plaintext through the same StreamReader / StreamWriter
// as over TCP. So this is http_serve.hpp's handler, unchanged.
#include <iostream>
#include <string>

#include "http_serve.hpp"

namespace net = fiberloop::net;

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::cerr << "usage: https_hello PORT CERT KEY [SECONDS]\n";
    return 2;
  }
  int port = std::stoi(argv[1]);
  double seconds = argc == 5 ? std::stod(argv[4]) : -1;
  net::SslContext ctx;
  try {
    // A missing file, or a key that is not the certificate's, is refused
    // here, once, with OpenSSL's reason: not at each handshake.
    ctx = net::SslContext::server(argv[2], argv[3]);
  } catch (const net::SslError& e) {
    std::cerr << "https_hello: " << e.what() << "\n";
    return 1;
  }
  // ALPN: a client that offers h2 first (curl, browsers) learns at the
  // handshake that this server speaks HTTP/1.1, instead of guessing.
  ctx.set_alpn_protocols({"http/1.1"});
  http::run("https_hello", port, seconds, {.ssl = ctx});
}
