// http_serve.hpp: the hello server that samples/http_hello.cpp serves over
// TCP and samples/https_hello.cpp over TLS. A handler sees the same
// StreamReader / StreamWriter either way, so this one copy is both.
//
// The request head is read a line at a time with readline_view(): each line
// is a view into the connection's buffer, parsed once as it arrives, so a
// request is served without copying or allocating anything. A view is only
// valid until the next read, which is why a line's facts go into a Request
// at once and the text itself is never kept.
#pragma once

#include <signal.h>

#include <charconv>
#include <cstddef>
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>
#include <string_view>

#include "http_text.hpp"

namespace http {
// Internal linkage, as when this was http_hello's own code: GCC inlines the
// functions called once only then (-finline-functions-called-once), which
// keeps the instructions per request of docs/performance.md what they were.
namespace {

namespace net = fiberloop::net;
using std::string_view;

// What serve needs to know of a request head.
struct Request {
  string_view error;     // a status to answer and close with, before any body
  bool allowed = false;  // GET or HEAD
  bool head = false;
  bool http11 = false;
  bool close = false, keep_alive = false;  // the Connection tokens seen
  bool has_length = false;
  std::size_t length = 0;  // of the body
};

// METHOD SP TARGET SP HTTP/1.x
void parse_request_line(string_view line, Request& req) {
  std::size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  string_view version = line.substr(sp2 + 1);
  req.http11 = version == "HTTP/1.1";
  if (sp1 == 0 || sp1 == string_view::npos || sp2 <= sp1 + 1 ||
      !(req.http11 || version == "HTTP/1.0")) {
    req.error = "400 Bad Request";
    return;
  }
  string_view method = line.substr(0, sp1);  // case-sensitive, unlike header names
  req.head = method == "HEAD";
  req.allowed = req.head || method == "GET";
}

void parse_header(string_view line, Request& req) {
  std::size_t colon = line.find(':');
  if (colon == 0 || colon == string_view::npos) {
    req.error = "400 Bad Request";
    return;
  }
  string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
  if (iequals(name, "connection")) {
    // A token list, e.g. "Keep-Alive, Upgrade"; repeated headers add up.
    while (!value.empty()) {
      std::size_t comma = value.find(',');
      string_view token = trim(value.substr(0, comma));
      req.close |= iequals(token, "close");
      req.keep_alive |= iequals(token, "keep-alive");
      value = comma == string_view::npos ? string_view() : value.substr(comma + 1);
    }
  } else if (iequals(name, "content-length")) {
    // Digits only ("+5", "-1", "5, 5" and values past size_t are refused),
    // and only once: two lengths would leave the body's end in doubt.
    auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), req.length);
    if (req.has_length || err != std::errc() || end != value.data() + value.size())
      req.error = "400 Bad Request";
    req.has_length = true;
  } else if (iequals(name, "transfer-encoding")) {
    // A chunked body cannot be skipped by its length: refuse it rather than
    // read it as the next request.
    req.error = "501 Not Implemented";
  }
}

// read_head fills req from the next request head; false if the stream ended
// first (between requests: the client is done). It stops at the first
// malformed line, to answer it at once: a client that sent garbage may not
// send the empty line that ends a head. The stream's limit bounds the whole
// head, not only each line, as readuntil("\r\n\r\n") would.
bool read_head(net::StreamReader& reader, Request& req) {
  string_view line = reader.readline_view();
  if (!line.ends_with('\n')) return false;
  std::size_t size = line.size();
  parse_request_line(chomp(line), req);
  while (req.error.empty() && (line = reader.readline_view()) != "\r\n" && line != "\n") {
    if (!line.ends_with('\n')) return false;
    if ((size += line.size()) > reader.limit())
      throw fiberloop::LimitOverrunError("request head longer than the limit", size);
    parse_header(chomp(line), req);
  }
  return true;
}

// skip reads n bytes and drops them, a buffer's worth at a time, so that a
// huge length costs time, not memory; false if the stream ended first.
bool skip(net::StreamReader& reader, std::size_t n) {
  while (n > 0) {
    std::size_t got = reader.read_view(n).size();
    if (got == 0) return false;
    n -= got;
  }
  return true;
}

// reply is a whole response. It always says Connection: an HTTP/1.0 client
// that asked for keep-alive only sends again once it sees "keep-alive".
std::string reply(string_view status, string_view body, bool keep_alive) {
  std::string r = "HTTP/1.1 ";
  r.append(status).append("\r\nContent-Type: text/plain\r\nContent-Length: ");
  r.append(std::to_string(body.size()));
  r.append(keep_alive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
  return r.append(body);
}

// refuse answers with an error, its status as the body, and ends the
// connection (the caller breaks out of its loop).
void refuse(net::StreamWriter& writer, string_view status) {
  writer.write(reply(status, std::string(status) + "\n", false));
}

constexpr string_view kHello = "Hello, world\n";
// The same bytes every time: made once, not per request.
const std::string hello_close = reply("200 OK", kHello, false);
const std::string hello_keep_alive = reply("200 OK", kHello, true);

// serve is one connection: requests one after another, as long as the
// client keeps the connection alive.
void serve(net::StreamReader reader, net::StreamWriter writer) {
  try {
    for (;;) {
      Request req;
      if (!read_head(reader, req)) break;
      if (!req.error.empty()) {
        refuse(writer, req.error);
        break;
      }
      // The body is not needed, but it must be read off the connection:
      // left there it would be taken for the next request, or, unread at
      // close(), make the kernel reset the connection under our reply.
      if (!skip(reader, req.length)) break;
      if (!req.allowed) {
        refuse(writer, "405 Method Not Allowed");
        break;
      }
      bool keep_alive = !req.close && (req.http11 || req.keep_alive);
      string_view r = keep_alive ? hello_keep_alive : hello_close;
      if (req.head) r.remove_suffix(kHello.size());
      // write() holds the bytes until this task next waits, so replies to
      // pipelined requests leave in one send; drain() (back-pressure) only
      // past the writer's high-water mark, when a client is not reading.
      writer.write(r);
      if (writer.write_buffer_size() > 64 * 1024) writer.drain();
      if (!keep_alive) break;
    }
  } catch (const fiberloop::LimitOverrunError&) {
    refuse(writer, "431 Request Header Fields Too Large");
  } catch (const std::exception&) {
    // a reset (or, over TLS, a record that does not decrypt): nobody to answer
  }
  writer.close();  // after what was written has been sent
}

// run(name, port, seconds, options) serves on 127.0.0.1:port, with
// options (a TLS context, for one), for seconds (forever if negative) or
// until SIGINT / SIGTERM.
void run(const char* name, int port, double seconds, net::ServerOptions options = {}) {
  fiberloop::run([&] {
    auto server = net::start_server(serve, "127.0.0.1", port, options);
    auto& loop = fiberloop::get_running_loop();
    // SIGINT / SIGTERM close the server, which ends serve_forever(): the
    // handlers run as loop callbacks, so they may. Set before the
    // "listening" line, which is what a test waits for before signalling.
    for (int sig : {SIGINT, SIGTERM})
      loop.add_signal_handler(sig, [server]() mutable { server.close(); });
    std::cout << name << ": listening on " << server.sockets()[0].to_string() << std::endl;
    fiberloop::TimerHandle deadline;
    if (seconds >= 0) deadline = loop.call_later(seconds, [server]() mutable { server.close(); });
    server.serve_forever();
    deadline.cancel();
    server.close_clients();
    server.wait_closed();
    // Failed handshakes are closed without a word to the handler (it never
    // starts): the count is the only trace of clients that spoke no TLS.
    if (options.ssl)
      std::cout << name << ": " << server.handshake_failures() << " TLS handshakes failed\n";
    std::cout << name << ": stopped" << std::endl;
  });
}

}  // namespace
}  // namespace http
