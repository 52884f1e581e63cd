// http_hello PORT [SECONDS]: a minimal HTTP/1.1 server on 127.0.0.1:PORT
// with keep-alive (HTTP/1.1's default; HTTP/1.0's "Connection: keep-alive",
// as `ab -k` sends), as plain sequential code. Runs for SECONDS, or until
// SIGINT / SIGTERM. PORT 0 picks a free port; the first line says which.
#include <algorithm>
#include <cctype>
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>

#include "stop_signals.hpp"

namespace net = fiberloop::net;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// header(head, name) is the value of a request header, lowercase and
// trimmed ("" if absent). name is lowercase.
std::string header(const std::string& head, const std::string& name) {
  std::string h = lower(head);
  std::size_t at = h.find("\r\n" + name + ":");
  if (at == std::string::npos) return {};
  std::size_t begin = at + name.size() + 3;
  std::size_t end = h.find("\r\n", begin);
  std::string value = h.substr(begin, end - begin);
  value.erase(0, value.find_first_not_of(" \t"));
  value.erase(value.find_last_not_of(" \t") + 1);
  return value;
}

// has_token(value, token): a comma-separated header value such as
// "keep-alive, upgrade" lists token.
bool has_token(const std::string& value, const std::string& token) {
  std::size_t begin = 0;
  while (begin <= value.size()) {
    std::size_t end = std::min(value.find(',', begin), value.size());
    std::string item = value.substr(begin, end - begin);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item == token) return true;
    begin = end + 1;
  }
  return false;
}

// keeps_alive(request_line, connection): HTTP/1.1 keeps the connection
// unless the client says "Connection: close"; HTTP/1.0 (what `ab -k` sends)
// only if it says "Connection: keep-alive".
bool keeps_alive(const std::string& request_line, const std::string& connection) {
  std::string version = request_line.substr(request_line.rfind(' ') + 1);
  if (version == "HTTP/1.1") return !has_token(connection, "close");
  return has_token(connection, "keep-alive");
}

// respond writes a reply with its Content-Length and, always, a Connection
// header saying what happens next: an HTTP/1.0 client that asked for
// keep-alive waits for "Connection: keep-alive" before sending again. HEAD
// gets the headers without the body.
void respond(net::StreamWriter& w, const std::string& status, const std::string& body,
             bool keep_alive, bool head_only = false) {
  w.write("HTTP/1.1 " + status +
          "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
          (keep_alive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n") +
          (head_only ? std::string() : body));
  w.drain();
}

// serve is one connection: requests one after another, as long as the
// client keeps the connection alive.
void serve(net::StreamReader reader, net::StreamWriter writer) {
  try {
    for (;;) {
      std::string head = reader.readuntil("\r\n\r\n");
      std::string request_line = head.substr(0, head.find("\r\n"));
      bool keep_alive = keeps_alive(request_line, header(head, "connection"));
      if (std::string length = header(head, "content-length"); !length.empty()) {
        reader.readexactly(std::stoul(length));  // a body we do not need
      }
      bool is_head = request_line.rfind("HEAD ", 0) == 0;
      if (request_line.rfind("GET ", 0) != 0 && !is_head) {
        respond(writer, "405 Method Not Allowed", "only GET here\n", false);
        break;
      }
      respond(writer, "200 OK", "Hello, world\n", keep_alive, is_head);
      if (!keep_alive) break;
    }
  } catch (const fiberloop::IncompleteReadError&) {
    // the client closed between requests: the normal end of keep-alive
  } catch (const fiberloop::LimitOverrunError&) {
    respond(writer, "431 Request Header Fields Too Large", "headers too long\n", false);
  } catch (const std::exception&) {
    // reset, or a malformed Content-Length: drop the connection
  }
  writer.close();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: http_hello PORT [SECONDS]\n";
    return 2;
  }
  int port = std::stoi(argv[1]);
  double seconds = argc == 3 ? std::stod(argv[2]) : -1;
  StopSignals signals;
  fiberloop::run([&] {
    auto server = net::start_server(serve, "127.0.0.1", port);
    std::cout << "http_hello: listening on " << server.sockets()[0].to_string() << std::endl;
    fiberloop::TimerHandle deadline;
    if (seconds >= 0) {
      deadline =
          fiberloop::get_running_loop().call_later(seconds, [server]() mutable { server.close(); });
    }
    auto stopper = fiberloop::spawn([&] {
      signals.wait();
      server.close();
    });
    server.serve_forever();
    deadline.cancel();
    stopper.cancel();
    server.close_clients();
    server.wait_closed();
    std::cout << "http_hello: stopped" << std::endl;
  });
}
