// mini_redis PORT [--batch]: a small Redis server (RESP2) on 127.0.0.1:PORT,
// written the way a user would write one: a task per connection that parses
// with readline() / readexactly() and write()s each reply as it is made.
// redis-cli and redis-benchmark talk to it. PORT 0 picks a free port; the
// first line says which. Stops on SIGINT / SIGTERM.
//
// Commands: PING ECHO GET SET DEL INCR EXISTS LPUSH RPUSH LPOP RPOP LRANGE
// LLEN QUIT, and COMMAND and CONFIG GET as far as redis-cli and
// redis-benchmark ask at start.
//
// One write() per reply does not mean one send() per reply: the writer holds
// the bytes until the task next waits (for the next request, usually), so a
// pipeline of 16 requests is answered with one send, as redis-server answers
// after it has run everything it read.
//
// --batch does that by hand, as the baseline of test/bench/redis: the
// replies pile up in a string, written once just before a read that may
// wait. StreamReader does not say how much it holds, so --batch reads into
// a buffer of its own (read_into) and parses from it, as redis-server parses
// its query buffer.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <deque>
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "stop_signals.hpp"

namespace net = fiberloop::net;

namespace {

using List = std::deque<std::string>;
using Args = std::vector<std::string>;
// One loop thread: the connections' tasks share the data without a lock.
std::unordered_map<std::string, std::variant<std::string, List>> db;
bool batch = false;

// Bounds on what a request may announce (512 MiB and 64 KiB are Redis's
// bulk and inline limits), so that a bogus length cannot make a connection
// wait for, or hold, gigabytes.
constexpr long long max_args = 1024 * 1024;
constexpr long long max_bulk = 512LL * 1024 * 1024;
constexpr std::size_t max_inline = 64 * 1024;
// Unsent replies past this wait for the client to read them.
constexpr std::size_t out_limit = 64 * 1024;

// A request that cannot be parsed: after it nothing on the connection can be
// trusted, so the reply says why and the connection closes.
struct ProtocolError {
  const char* why;
};
// A command on a key that holds the other kind of value.
struct WrongType {};

std::optional<long long> to_int(std::string_view s) {
  long long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Batched is --batch's reader: readline() / readexactly() from its own
// buffer, writing the replies gathered so far before it reads more.
class Batched {
 public:
  Batched(net::StreamReader r, net::StreamWriter w, std::string& out) : r_(r), w_(w), out_(out) {}
  std::string readline() {
    for (;;) {
      std::size_t nl = std::string_view(buf_.data() + beg_, end_ - beg_).find('\n');
      if (nl != std::string_view::npos) return take(nl + 1);
      if (end_ - beg_ > max_inline) throw ProtocolError{"too big inline request"};
      if (!fill()) return take(end_ - beg_);
    }
  }
  std::string readexactly(std::size_t n) {
    while (end_ - beg_ < n) {
      if (!fill()) throw fiberloop::IncompleteReadError(take(end_ - beg_), n);
    }
    return take(n);
  }
  void flush() {
    w_.write(out_);
    out_.clear();
  }

 private:
  std::string take(std::size_t n) {
    std::string s(buf_.data() + beg_, n);
    beg_ += n;
    return s;
  }
  bool fill() {
    flush();
    std::copy(buf_.begin() + beg_, buf_.begin() + end_, buf_.begin());
    end_ -= beg_;
    beg_ = 0;
    if (buf_.size() - end_ < 4096) buf_.resize(std::max<std::size_t>(16 * 1024, buf_.size() * 2));
    std::size_t n = r_.read_into(buf_.data() + end_, buf_.size() - end_);
    end_ += n;
    return n > 0;
  }
  net::StreamReader r_;
  net::StreamWriter w_;
  std::string& out_;
  std::vector<char> buf_;
  std::size_t beg_ = 0, end_ = 0;
};

// next_line reads a line without its "\r\n"; false if the stream ended first.
template <class In>
bool next_line(In& in, std::string& line) {
  line = in.readline();
  if (line.empty() || line.back() != '\n') return false;
  line.pop_back();
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

// read_command reads one request into args: a RESP array of bulk strings
// (what clients send), or an inline line split on spaces (what a person at
// telnet types). False once the client is gone. In is a StreamReader or a
// Batched: the same parser serves both modes.
template <class In>
bool read_command(In& in, Args& args) {
  args.clear();
  std::string line;
  while (args.empty()) {
    if (!next_line(in, line)) return false;
    if (line.empty() || line[0] != '*') {
      for (std::size_t b = line.find_first_not_of(' '); b != std::string::npos;) {
        std::size_t e = std::min(line.find(' ', b), line.size());
        args.push_back(line.substr(b, e - b));
        b = line.find_first_not_of(' ', e);
      }
      continue;
    }
    auto n = to_int(std::string_view(line).substr(1));
    if (!n || *n > max_args) throw ProtocolError{"invalid multibulk length"};
    for (long long i = 0; i < *n; ++i) {  // *0 and *-1 are no command: read on
      if (!next_line(in, line)) return false;
      auto len =
          line.empty() || line[0] != '$' ? std::nullopt : to_int(std::string_view(line).substr(1));
      if (!len || *len < 0 || *len > max_bulk) throw ProtocolError{"invalid bulk length"};
      auto size = static_cast<std::size_t>(*len);
      std::string arg = in.readexactly(size + 2);
      if (arg.compare(size, 2, "\r\n") != 0) throw ProtocolError{"bulk string without CRLF"};
      arg.resize(size);
      args.push_back(std::move(arg));
    }
  }
  return true;
}

// The RESP2 replies, appended to out.
void simple(std::string& out, std::string_view s) { (out += '+').append(s) += "\r\n"; }
void error(std::string& out, std::string_view s) { (out += '-').append(s) += "\r\n"; }
void integer(std::string& out, long long v) { (out += ':').append(std::to_string(v)) += "\r\n"; }
void null(std::string& out) { out += "$-1\r\n"; }
void bulk(std::string& out, std::string_view s) {
  (out += '$').append(std::to_string(s.size())).append("\r\n").append(s) += "\r\n";
}

// find<T>(key) is the value at key, nullptr if there is none.
template <class T>
T* find(const std::string& key) {
  auto it = db.find(key);
  if (it == db.end()) return nullptr;
  if (T* v = std::get_if<T>(&it->second)) return v;
  throw WrongType{};
}

// The commands: a[0] is the name, the argument count is checked already.
void ping(Args& a, std::string& out) { a.size() == 1 ? simple(out, "PONG") : bulk(out, a[1]); }
void echo(Args& a, std::string& out) { bulk(out, a[1]); }
void quit(Args&, std::string& out) { simple(out, "OK"); }
void command(Args&, std::string& out) { out += "*0\r\n"; }

// redis-benchmark asks for these two at start, and warns without them;
// nothing is ever saved here. Any other setting: none known.
void config(Args& a, std::string& out) {
  if (a.size() != 3 || (a[2] != "save" && a[2] != "appendonly")) return command(a, out);
  out += "*2\r\n";
  bulk(out, a[2]);
  bulk(out, a[2] == "save" ? "" : "no");
}

void get(Args& a, std::string& out) {
  auto* v = find<std::string>(a[1]);
  v ? bulk(out, *v) : null(out);
}

void set(Args& a, std::string& out) {
  if (a.size() > 3) return error(out, "ERR syntax error");  // no options here
  db.insert_or_assign(std::move(a[1]), std::move(a[2]));
  simple(out, "OK");
}

void del(Args& a, std::string& out) {
  std::size_t n = 0;
  for (std::size_t i = 1; i < a.size(); ++i) n += db.erase(a[i]);
  integer(out, static_cast<long long>(n));
}

void exists(Args& a, std::string& out) {
  std::size_t n = 0;
  for (std::size_t i = 1; i < a.size(); ++i) n += db.count(a[i]);
  integer(out, static_cast<long long>(n));
}

void incr(Args& a, std::string& out) {
  auto* v = find<std::string>(a[1]);
  std::optional<long long> n = v ? to_int(*v) : 0;
  if (!n) return error(out, "ERR value is not an integer or out of range");
  if (*n == LLONG_MAX) return error(out, "ERR increment or decrement would overflow");
  db.insert_or_assign(a[1], std::to_string(*n + 1));
  integer(out, *n + 1);
}

void push(Args& a, std::string& out, bool front) {
  List* list = std::get_if<List>(&db.try_emplace(a[1], List{}).first->second);
  if (!list) throw WrongType{};
  for (std::size_t i = 2; i < a.size(); ++i) {
    front ? list->push_front(std::move(a[i])) : list->push_back(std::move(a[i]));
  }
  integer(out, static_cast<long long>(list->size()));
}
void lpush(Args& a, std::string& out) { push(a, out, true); }
void rpush(Args& a, std::string& out) { push(a, out, false); }

void pop(Args& a, std::string& out, bool front) {
  List* list = find<List>(a[1]);
  if (!list) return null(out);
  bulk(out, front ? list->front() : list->back());
  front ? list->pop_front() : list->pop_back();
  if (list->empty()) db.erase(a[1]);  // as in Redis, an empty list is no key
}
void lpop(Args& a, std::string& out) { pop(a, out, true); }
void rpop(Args& a, std::string& out) { pop(a, out, false); }

void lrange(Args& a, std::string& out) {
  auto start = to_int(a[2]), stop = to_int(a[3]);
  if (!start || !stop) return error(out, "ERR value is not an integer or out of range");
  List* list = find<List>(a[1]);
  long long n = list ? static_cast<long long>(list->size()) : 0;
  long long from = *start < 0 ? std::max(0LL, *start + n) : *start;  // -1 is the last
  long long to = std::min(*stop < 0 ? *stop + n : *stop, n - 1);
  (out += '*').append(std::to_string(std::max(0LL, to - from + 1))) += "\r\n";
  for (long long i = from; i <= to; ++i) bulk(out, (*list)[static_cast<std::size_t>(i)]);
}

void llen(Args& a, std::string& out) {
  List* list = find<List>(a[1]);
  integer(out, list ? static_cast<long long>(list->size()) : 0);
}

struct Command {
  std::size_t min_args, max_args;  // the name included
  void (*run)(Args&, std::string&);
};
constexpr std::size_t any = SIZE_MAX;
const std::unordered_map<std::string, Command> commands = {
    {"PING", {1, 2, ping}},       {"ECHO", {2, 2, echo}},     {"GET", {2, 2, get}},
    {"SET", {3, any, set}},       {"DEL", {2, any, del}},     {"EXISTS", {2, any, exists}},
    {"INCR", {2, 2, incr}},       {"LPUSH", {3, any, lpush}}, {"RPUSH", {3, any, rpush}},
    {"LPOP", {2, 2, lpop}},       {"RPOP", {2, 2, rpop}},     {"LRANGE", {4, 4, lrange}},
    {"LLEN", {2, 2, llen}},       {"QUIT", {1, any, quit}},   {"COMMAND", {1, any, command}},
    {"CONFIG", {2, any, config}},
};

// execute appends the reply to args to out; false for QUIT.
bool execute(Args& args, std::string& out) {
  std::string name = args[0];
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  auto it = commands.find(name);
  if (it == commands.end()) {
    error(out, "ERR unknown command '" + args[0] + "'");
  } else if (args.size() < it->second.min_args || args.size() > it->second.max_args) {
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    error(out, "ERR wrong number of arguments for '" + name + "' command");
  } else {
    try {
      it->second.run(args, out);
    } catch (const WrongType&) {
      error(out, "WRONGTYPE Operation against a key holding the wrong kind of value");
    }
  }
  return name != "QUIT";
}

// serve is one connection: a request, its reply, and again.
void serve(net::StreamReader reader, net::StreamWriter writer) {
  Args args;
  std::string out;  // replies not yet handed to the writer
  Batched batched(reader, writer, out);
  try {
    while (batch ? read_command(batched, args) : read_command(reader, args)) {
      bool quit = !execute(args, out);
      if (!batch || quit || out.size() > out_limit) {
        writer.write(out);
        out.clear();
      }
      // drain() sends at once: after every reply it would undo the writer's
      // coalescing, so only a client that lets its replies pile up waits.
      if (writer.write_buffer_size() > out_limit) writer.drain();
      if (quit) break;
    }
  } catch (const ProtocolError& e) {
    out.append("-ERR Protocol error: ").append(e.why) += "\r\n";
  } catch (const fiberloop::LimitOverrunError&) {
    out += "-ERR Protocol error: too big inline request\r\n";
  } catch (const fiberloop::IncompleteReadError&) {
    // the client left in the middle of a request
  } catch (const std::system_error&) {
    // reset by the peer
  }
  writer.write(out);
  writer.close();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[2]) == "--batch") batch = true;
  if (argc < 2 || argc > 3 || (argc == 3 && !batch)) {
    std::cerr << "usage: mini_redis PORT [--batch]\n";
    return 2;
  }
  int port = std::stoi(argv[1]);
  StopSignals signals;
  fiberloop::run([&] {
    auto server = net::start_server(serve, "127.0.0.1", port, {.backlog = 1024});
    std::cout << "mini_redis: listening on " << server.sockets()[0].to_string() << std::endl;
    auto stopper = fiberloop::spawn([&] {
      signals.wait();
      server.close();
    });
    server.serve_forever();
    stopper.cancel();
    server.close_clients();
    server.wait_closed();
    std::cout << "mini_redis: stopped" << std::endl;
  });
}
