// https_get URL [--cafile FILE]: fetches https://HOST[:PORT]/PATH and prints
// the status line, the TLS version and cipher agreed on, and the body.
//
// The server's certificate and host name are verified, as by any client
// made with SslContext::client(): against the system's CA store, and also
// against the CAs in FILE with --cafile (a private CA, e.g. test/tls's).
// A refused certificate prints the library's message, which says why and
// for which host, and exits 1:
//
//   build/samples/https_get https://localhost:8443/ --cafile /tmp/certs/ca.pem
//
// The whole fetch runs under one 30 s timeout (with_timeout), so that a
// server that accepts and then says nothing cannot hang it.
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>
#include <string_view>

#include "http_text.hpp"

namespace net = fiberloop::net;

namespace {

struct Url {
  std::string host;       // as resolved and verified: no brackets around IPv6
  std::string authority;  // as the Host header says it: host[:port]
  int port = 443;
  std::string path = "/";
};

Url parse_url(std::string_view url) {
  constexpr std::string_view scheme = "https://";
  if (!url.starts_with(scheme))
    throw std::invalid_argument("not an https:// URL: " + std::string(url));
  url.remove_prefix(scheme.size());
  std::size_t slash = url.find('/');
  Url u;
  u.authority = url.substr(0, slash);
  if (slash != std::string_view::npos) u.path = url.substr(slash);
  std::string_view hostport = u.authority;
  // An IPv6 address holds colons of its own: the port is after the ']'.
  std::size_t colon = hostport.rfind(':');
  if (colon != std::string_view::npos && hostport.find(']', colon) == std::string_view::npos) {
    u.port = std::stoi(std::string(hostport.substr(colon + 1)));
    hostport = hostport.substr(0, colon);
  }
  if (hostport.starts_with('[') && hostport.ends_with(']'))
    hostport = hostport.substr(1, hostport.size() - 2);
  if (hostport.empty()) throw std::invalid_argument("no host in the URL");
  u.host = hostport;
  return u;
}

// head_line is the next line of the head (or of the chunked framing),
// without its line end; a stream that ends mid-line is a response cut short.
std::string head_line(net::StreamReader& reader) {
  std::string line = reader.readline();
  if (!line.ends_with('\n'))
    throw std::runtime_error("the server closed the connection mid-response");
  return std::string(http::chomp(line));
}

// read_body reads the body as the head frames it: a Content-Length, chunks,
// or everything up to the end of the stream.
std::string read_body(net::StreamReader& reader, const std::string& length, bool chunked) {
  if (chunked) {
    std::string body;
    for (;;) {
      std::size_t size = std::stoul(head_line(reader), nullptr, 16);  // stops at ';' extensions
      if (size == 0) break;
      body += reader.readexactly(size);
      head_line(reader);  // the CRLF after the chunk
    }
    // Trailers, up to the empty line.
    while (!head_line(reader).empty()) continue;
    return body;
  }
  if (!length.empty()) return reader.readexactly(std::stoul(length));
  return reader.read();
}

int fetch(const Url& url, const std::string& cafile) {
  auto ctx = net::SslContext::client();
  if (!cafile.empty()) ctx.load_verify_locations(cafile);
  ctx.set_alpn_protocols({"http/1.1"});
  // The handshake, certificate checks included, happens here: what comes
  // back is a stream that already speaks plaintext to a verified server.
  auto [reader, writer] = net::open_connection(url.host, url.port, {.ssl = ctx});
  writer.write("GET " + url.path + " HTTP/1.1\r\nHost: " + url.authority +
               "\r\nUser-Agent: fiberloop-https_get\r\nConnection: close\r\n\r\n");
  std::string status = head_line(reader);
  std::string length;
  bool chunked = false;
  for (std::string line; !(line = head_line(reader)).empty();) {
    std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string_view name = std::string_view(line).substr(0, colon);
    std::string_view value = http::trim(std::string_view(line).substr(colon + 1));
    if (http::iequals(name, "content-length")) length = value;
    if (http::iequals(name, "transfer-encoding"))
      chunked = value.find("chunked") != std::string::npos;
  }
  std::string body = read_body(reader, length, chunked);
  net::TlsInfo tls = *writer.tls();
  std::cout << status << "\n";
  std::cout << "tls: " << tls.version << ", " << tls.cipher;
  if (!tls.alpn_protocol.empty()) std::cout << ", ALPN " << tls.alpn_protocol;
  std::cout << "\n\n" << body << std::flush;
  // Without a length, only close_notify tells the body's end from a
  // connection cut short (by the network, or by an attacker).
  if (length.empty() && !chunked && tls.truncated)
    std::cerr << "https_get: the server closed without close_notify: the body may be truncated\n";
  writer.close();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url_text, cafile;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--cafile" && i + 1 < argc) {
      cafile = argv[++i];
    } else if (url_text.empty() && !arg.starts_with("--")) {
      url_text = arg;
    } else {
      url_text.clear();
      break;
    }
  }
  if (url_text.empty()) {
    std::cerr << "usage: https_get URL [--cafile FILE]\n";
    return 2;
  }
  return fiberloop::run([&] {
    try {
      Url url = parse_url(url_text);
      return fiberloop::with_timeout(30.0, [&] { return fetch(url, cafile); });
    } catch (const fiberloop::TimeoutError&) {
      std::cerr << "https_get: no answer within 30 s\n";
    } catch (const std::exception& e) {
      // SslCertVerificationError's what() says why and for which host name.
      std::cerr << "https_get: " << e.what() << "\n";
    }
    return 1;
  });
}
