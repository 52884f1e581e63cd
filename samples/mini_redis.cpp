// mini_redis PORT [--batch]: a small Redis server (RESP2) on 127.0.0.1:PORT,
// written the way a user would write a fast one: a task per connection that
// parses with StreamReader's zero-copy readline_view() / readexactly_view()
// and writes its replies once the reader holds nothing more. redis-cli and
// redis-benchmark talk to it. PORT 0 picks a free port; the first line says
// which. Stops on SIGINT / SIGTERM.
//
// Commands: PING ECHO GET SET DEL INCR EXISTS LPUSH RPUSH LPOP RPOP LRANGE
// LLEN QUIT, and COMMAND and CONFIG GET as far as redis-cli and
// redis-benchmark ask at start.
//
// Replies are gathered in a string and handed to the writer when
// reader.buffered() is 0: everything read so far is answered, so a pipeline
// of 16 requests costs one write() (and one send), as redis-server answers
// after it has run everything it read. (write() per reply would be correct
// too, the writer holds the bytes until the task waits, but each write()
// costs a call into the library.)
//
// --batch is the baseline of test/bench/redis: the same server, reading into
// a buffer of its own (read_into) and parsing from it, as redis-server parses
// its query buffer, with the replies written before any read that may wait.
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <deque>
#include <fiberloop/fiberloop.hpp>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace net = fiberloop::net;
using namespace std::literals;

namespace {

using List = std::deque<std::string>;
using Value = std::variant<std::string, List>;
// Hash and std::equal_to<> let find() take a std::string_view: a lookup by
// a key still in the reader's buffer makes no std::string of it.
struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
// One loop thread: the connections' tasks share the data without a lock.
std::unordered_map<std::string, Value, Hash, std::equal_to<>> db;
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

// Args is a request's arguments (args[0] is the command's name) as views.
// A view from the reader lives only until its next read, and a request takes
// several reads (a line per length, then the bytes), so every argument but
// the last is copied into `kept_`, which the connection reuses from request
// to request (no allocation once it has grown). The last one, mostly the key
// or the value, stays where it lies: nothing reads between it and the reply.
class Args {
 public:
  void clear() {
    kept_.clear();
    ends_.clear();
    last_.reset();
    // A large request's memory is not held on to.
    if (kept_.capacity() > max_inline) kept_ = std::string();
    if (!large_.empty()) large_ = std::string();
  }
  void keep(std::string_view arg) {  // copied: more reads come before the reply
    kept_.append(arg);
    ends_.push_back(kept_.size());
  }
  void lend(std::string_view arg) { last_ = arg; }  // the last, as it lies
  // hold(s) keeps s (an argument too large for a view) for this request.
  std::string_view hold(std::string s) { return large_ = std::move(s); }

  std::size_t size() const { return ends_.size() + (last_ ? 1 : 0); }
  bool empty() const { return size() == 0; }
  std::string_view operator[](std::size_t i) const {
    if (i == ends_.size()) return *last_;
    std::size_t begin = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(kept_).substr(begin, ends_[i] - begin);
  }

 private:
  std::string kept_;               // the copied arguments, back to back
  std::vector<std::size_t> ends_;  // where each one ends in kept_
  std::optional<std::string_view> last_;
  std::string large_;
};

// Batched is --batch's reader: readline_view() / readexactly_view() from its
// own buffer, with StreamReader's rule (a view lives until the next read),
// writing the replies gathered so far before it reads more.
class Batched {
 public:
  Batched(net::StreamReader r, net::StreamWriter w, std::string& out) : r_(r), w_(w), out_(out) {}
  std::string_view readline_view() {
    for (;;) {
      std::size_t nl = std::string_view(buf_.data() + beg_, end_ - beg_).find('\n');
      if (nl != std::string_view::npos) return take(nl + 1);
      if (end_ - beg_ > max_inline) throw ProtocolError{"too big inline request"};
      if (!fill()) return take(end_ - beg_);
    }
  }
  std::string_view readexactly_view(std::size_t n) {
    while (end_ - beg_ < n) {
      if (!fill()) throw fiberloop::IncompleteReadError(std::string(take(end_ - beg_)), n);
    }
    return take(n);
  }
  // The buffer grows to hold any request: no limit on a view, so the
  // parser never needs readexactly().
  std::size_t limit() const { return SIZE_MAX; }
  std::string readexactly(std::size_t n) { return std::string(readexactly_view(n)); }
  std::size_t buffered() const { return end_ - beg_; }

 private:
  std::string_view take(std::size_t n) {
    std::string_view s(buf_.data() + beg_, n);
    beg_ += n;
    return s;
  }
  bool fill() {
    if (!out_.empty()) {
      w_.write(out_);
      out_.clear();
    }
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
bool next_line(In& in, std::string_view& line) {
  line = in.readline_view();
  if (line.empty() || line.back() != '\n') return false;
  line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return true;
}

// read_command reads one request into args: a RESP array of bulk strings
// (what clients send), or an inline line split on spaces (what a person at
// telnet types). False once the client is gone. In is a StreamReader or a
// Batched: the same parser serves both modes. limit is in.limit(), asked
// once per connection.
template <class In>
bool read_command(In& in, std::size_t limit, Args& args) {
  args.clear();
  std::string_view line;
  while (args.empty()) {
    if (!next_line(in, line)) return false;
    if (line.empty() || line[0] != '*') {  // rare: its words are copied
      for (std::size_t b = line.find_first_not_of(' '); b != std::string_view::npos;) {
        std::size_t e = std::min(line.find(' ', b), line.size());
        args.keep(line.substr(b, e - b));
        b = line.find_first_not_of(' ', e);
      }
      continue;
    }
    auto n = to_int(line.substr(1));
    if (!n || *n > max_args) throw ProtocolError{"invalid multibulk length"};
    for (long long i = 0; i < *n; ++i) {  // *0 and *-1 are no command: read on
      if (!next_line(in, line)) return false;
      auto len = line.empty() || line[0] != '$' ? std::nullopt : to_int(line.substr(1));
      if (!len || *len < 0 || *len > max_bulk) throw ProtocolError{"invalid bulk length"};
      auto size = static_cast<std::size_t>(*len);
      // A view must fit in the reader's buffer (its limit): a larger
      // argument is read as a string of its own.
      std::string_view arg =
          size + 2 <= limit ? in.readexactly_view(size + 2) : args.hold(in.readexactly(size + 2));
      if (arg.substr(size) != "\r\n") throw ProtocolError{"bulk string without CRLF"};
      arg.remove_suffix(2);
      if (i + 1 < *n) {
        args.keep(arg);
      } else {
        args.lend(arg);
      }
    }
  }
  return true;
}

// The RESP2 replies, appended to out.
void simple(std::string& out, std::string_view s) { (out += '+').append(s) += "\r\n"sv; }
void error(std::string& out, std::string_view s) { (out += '-').append(s) += "\r\n"sv; }
void integer(std::string& out, long long v) { (out += ':').append(std::to_string(v)) += "\r\n"sv; }
void null(std::string& out) { out += "$-1\r\n"sv; }
void bulk(std::string& out, std::string_view s) {
  char len[24];
  char* end = std::to_chars(len, len + sizeof len, s.size()).ptr;
  (out += '$').append(len, end).append("\r\n"sv).append(s) += "\r\n"sv;
}

// find<T>(key) is the value at key, nullptr if there is none.
template <class T>
T* find(std::string_view key) {
  auto it = db.find(key);
  if (it == db.end()) return nullptr;
  if (T* v = std::get_if<T>(&it->second)) return v;
  throw WrongType{};
}

// store(key, value) sets key to a copy of value: the copy the store keeps,
// the only one a SET makes. An existing string takes it in its own memory.
void store(std::string_view key, std::string_view value) {
  auto it = db.find(key);
  if (it == db.end()) {
    db.emplace(std::string(key), std::string(value));
  } else if (auto* s = std::get_if<std::string>(&it->second)) {
    s->assign(value);
  } else {
    it->second.emplace<std::string>(value);
  }
}

// The commands: a[0] is the name, the argument count is checked already.
void ping(const Args& a, std::string& out) {
  a.size() == 1 ? simple(out, "PONG") : bulk(out, a[1]);
}
void echo(const Args& a, std::string& out) { bulk(out, a[1]); }
void quit(const Args&, std::string& out) { simple(out, "OK"); }
void command(const Args&, std::string& out) { out += "*0\r\n"; }

// redis-benchmark asks for these two at start, and warns without them;
// nothing is ever saved here. Any other setting: none known.
void config(const Args& a, std::string& out) {
  if (a.size() != 3 || (a[2] != "save" && a[2] != "appendonly")) return command(a, out);
  out += "*2\r\n";
  bulk(out, a[2]);
  bulk(out, a[2] == "save" ? "" : "no");
}

void get(const Args& a, std::string& out) {
  auto* v = find<std::string>(a[1]);
  v ? bulk(out, *v) : null(out);
}

void set(const Args& a, std::string& out) {
  if (a.size() > 3) return error(out, "ERR syntax error");  // no options here
  store(a[1], a[2]);
  simple(out, "OK");
}

void del(const Args& a, std::string& out) {
  std::size_t n = 0;
  for (std::size_t i = 1; i < a.size(); ++i) {
    if (auto it = db.find(a[i]); it != db.end()) {
      db.erase(it);
      ++n;
    }
  }
  integer(out, static_cast<long long>(n));
}

void exists(const Args& a, std::string& out) {
  std::size_t n = 0;
  for (std::size_t i = 1; i < a.size(); ++i) n += db.count(a[i]);
  integer(out, static_cast<long long>(n));
}

void incr(const Args& a, std::string& out) {
  auto* v = find<std::string>(a[1]);
  std::optional<long long> n = v ? to_int(*v) : 0;
  if (!n) return error(out, "ERR value is not an integer or out of range");
  if (*n == LLONG_MAX) return error(out, "ERR increment or decrement would overflow");
  store(a[1], std::to_string(*n + 1));
  integer(out, *n + 1);
}

void push(const Args& a, std::string& out, bool front) {
  auto it = db.find(a[1]);
  if (it == db.end()) it = db.emplace(std::string(a[1]), List{}).first;
  List* list = std::get_if<List>(&it->second);
  if (!list) throw WrongType{};
  for (std::size_t i = 2; i < a.size(); ++i) {
    front ? list->emplace_front(a[i]) : list->emplace_back(a[i]);
  }
  integer(out, static_cast<long long>(list->size()));
}
void lpush(const Args& a, std::string& out) { push(a, out, true); }
void rpush(const Args& a, std::string& out) { push(a, out, false); }

void pop(const Args& a, std::string& out, bool front) {
  List* list = find<List>(a[1]);
  if (!list) return null(out);
  bulk(out, front ? list->front() : list->back());
  front ? list->pop_front() : list->pop_back();
  if (list->empty()) db.erase(db.find(a[1]));  // as in Redis, an empty list is no key
}
void lpop(const Args& a, std::string& out) { pop(a, out, true); }
void rpop(const Args& a, std::string& out) { pop(a, out, false); }

void lrange(const Args& a, std::string& out) {
  auto start = to_int(a[2]), stop = to_int(a[3]);
  if (!start || !stop) return error(out, "ERR value is not an integer or out of range");
  List* list = find<List>(a[1]);
  long long n = list ? static_cast<long long>(list->size()) : 0;
  long long from = *start < 0 ? std::max(0LL, *start + n) : *start;  // -1 is the last
  long long to = std::min(*stop < 0 ? *stop + n : *stop, n - 1);
  (out += '*').append(std::to_string(std::max(0LL, to - from + 1))) += "\r\n";
  for (long long i = from; i <= to; ++i) bulk(out, (*list)[static_cast<std::size_t>(i)]);
}

void llen(const Args& a, std::string& out) {
  List* list = find<List>(a[1]);
  integer(out, list ? static_cast<long long>(list->size()) : 0);
}

struct Command {
  std::string_view name;
  std::size_t min_args, max_args;  // the name included
  void (*run)(const Args&, std::string&);
};
constexpr std::size_t any = SIZE_MAX;
// Found by a scan: for 16 names that is as quick as a hash table.
constexpr Command commands[] = {
    {"GET", 2, 2, get},         {"SET", 3, any, set},     {"PING", 1, 2, ping},
    {"ECHO", 2, 2, echo},       {"DEL", 2, any, del},     {"EXISTS", 2, any, exists},
    {"INCR", 2, 2, incr},       {"LPUSH", 3, any, lpush}, {"RPUSH", 3, any, rpush},
    {"LPOP", 2, 2, lpop},       {"RPOP", 2, 2, rpop},     {"LRANGE", 4, 4, lrange},
    {"LLEN", 2, 2, llen},       {"QUIT", 1, any, quit},   {"COMMAND", 1, any, command},
    {"CONFIG", 2, any, config},
};

// find_command(name) is the command of that name, in any case; nullptr for
// none. (ASCII case only, as std::toupper in the "C" locale this runs in.)
const Command* find_command(std::string_view name) {
  auto upper = [](char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; };
  for (const Command& c : commands) {
    if (c.name.size() == name.size() && std::equal(name.begin(), name.end(), c.name.begin(),
                                                   [&](char a, char b) { return upper(a) == b; }))
      return &c;
  }
  return nullptr;
}

// execute appends the reply to args to out; false for QUIT.
bool execute(const Args& args, std::string& out) {
  const Command* c = find_command(args[0]);
  if (!c) {
    error(out, "ERR unknown command '"s.append(args[0]) += '\'');
  } else if (args.size() < c->min_args || args.size() > c->max_args) {
    std::string name(c->name);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](char ch) { return static_cast<char>(ch - 'A' + 'a'); });
    error(out, "ERR wrong number of arguments for '" + name + "' command");
  } else {
    try {
      c->run(args, out);
    } catch (const WrongType&) {
      error(out, "WRONGTYPE Operation against a key holding the wrong kind of value");
    }
  }
  return !c || c->name != "QUIT";
}

// converse runs the requests of a connection and writes their replies. The
// replies are gathered in `out` and written once the reader holds nothing
// more: a pipeline is answered in one write(). A request cut short at the end
// of what came waits for its rest with the replies before it still in `out`:
// clients send whole requests, so the rest is on its way. (--batch writes
// before any read that may wait, as the library does with a write per reply.)
template <class In>
void converse(In& in, net::StreamWriter& writer, std::string& out) {
  Args args;
  const std::size_t limit = in.limit();
  while (read_command(in, limit, args)) {
    bool quit = !execute(args, out);
    if (quit || in.buffered() == 0 || out.size() > out_limit) {
      writer.write(out);
      out.clear();
      // Only a client that lets its replies pile up waits here.
      if (writer.write_buffer_size() > out_limit) writer.drain();
    }
    if (quit) break;
  }
}

// serve is one connection: requests, their replies, and again.
void serve(net::StreamReader reader, net::StreamWriter writer) {
  std::string out;  // replies not yet handed to the writer
  try {
    if (batch) {
      Batched batched(reader, writer, out);
      converse(batched, writer, out);
    } else {
      converse(reader, writer, out);
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
  fiberloop::run([&] {
    auto server = net::start_server(serve, "127.0.0.1", port, {.backlog = 1024});
    // SIGINT / SIGTERM close the server (a loop callback may), which ends
    // serve_forever(); set before the "listening" line tests wait for.
    auto& loop = fiberloop::get_running_loop();
    for (int sig : {SIGINT, SIGTERM})
      loop.add_signal_handler(sig, [server]() mutable { server.close(); });
    std::cout << "mini_redis: listening on " << server.sockets()[0].to_string() << std::endl;
    server.serve_forever();
    server.close_clients();
    server.wait_closed();
    std::cout << "mini_redis: stopped" << std::endl;
  });
}
