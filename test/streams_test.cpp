// StreamReader / StreamWriter (net/streams.hpp) over loopback, after
// CPython's test_asyncio/test_streams.py.
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"

using fiberloop::IncompleteReadError;
using fiberloop::LimitOverrunError;
using fiberloop::RuntimeError;
using net::Socket;
using net::StreamReader;
using net::StreamWriter;

namespace {

struct StreamsFixture : LoopFixture {
  StreamsFixture() { ::signal(SIGPIPE, SIG_DFL); }
};


}  // namespace

BOOST_FIXTURE_TEST_SUITE(streams, StreamsFixture)

BOOST_AUTO_TEST_CASE(readline_readexactly_readuntil_read) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "first line\nsecond\r\nXYZ--tail");
    p.raw.shutdown(SHUT_WR);
    BOOST_TEST(p.reader.readline() == "first line\n");
    BOOST_TEST(p.reader.readuntil("\r\n") == "second\r\n");
    BOOST_TEST(p.reader.readexactly(3) == "XYZ");
    BOOST_TEST(p.reader.read(2) == "--");
    BOOST_TEST(!p.reader.at_eof());
    BOOST_TEST(p.reader.read() == "tail");
    BOOST_TEST(p.reader.at_eof());
    BOOST_TEST(p.reader.read(10) == "");
    BOOST_TEST(p.reader.readline() == "");
    BOOST_TEST(p.reader.read(0) == "");
  });
}

BOOST_AUTO_TEST_CASE(readline_returns_the_partial_last_line_at_eof) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "no newline at the end");
    p.raw.close();
    BOOST_TEST(p.reader.readline() == "no newline at the end");
    BOOST_TEST(p.reader.at_eof());
  });
}

BOOST_AUTO_TEST_CASE(readexactly_at_eof_carries_the_partial_bytes) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "only9byte");
    p.raw.shutdown(SHUT_WR);
    try {
      p.reader.readexactly(20);
      BOOST_FAIL("readexactly did not throw");
    } catch (const IncompleteReadError& e) {
      BOOST_TEST(e.partial == "only9byte");
      BOOST_TEST(e.expected.value() == 20u);
    }
    BOOST_TEST(p.reader.at_eof());
  });
}

BOOST_AUTO_TEST_CASE(readuntil_past_the_limit_keeps_the_bytes_readable) {
  run([] {
    StreamPair p = stream_pair({.limit = 16});
    net::sock_sendall(p.raw, "0123456789abcdefghijkl|rest|");
    try {
      p.reader.readuntil("|");
      BOOST_FAIL("readuntil did not throw");
    } catch (const LimitOverrunError& e) {
      BOOST_TEST(e.consumed > 16u);
    }
    BOOST_TEST(p.reader.readexactly(10) == "0123456789");
    BOOST_TEST(p.reader.readuntil("|") == "abcdefghijkl|");
    BOOST_TEST(p.reader.readuntil("|") == "rest|");
  });
}

BOOST_AUTO_TEST_CASE(readuntil_at_eof_without_the_separator_gives_everything_left) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "abc");
    p.raw.shutdown(SHUT_WR);
    try {
      p.reader.readuntil("\n");
      BOOST_FAIL("no throw");
    } catch (const IncompleteReadError& e) {
      BOOST_TEST(e.partial == "abc");
      BOOST_TEST(!e.expected.has_value());
    }
    BOOST_CHECK_THROW(p.reader.readuntil(""), std::invalid_argument);
  });
}

BOOST_AUTO_TEST_CASE(an_over_long_line_is_refused_and_the_next_line_reads) {
  run([] {
    StreamPair p = stream_pair({.limit = 100});
    net::sock_sendall(p.raw, std::string(1000, 'x') + "\nshort\n");
    BOOST_CHECK_THROW(p.reader.readline(), LimitOverrunError);
    // asyncio discards what it buffered of the long line; keep reading
    // lines until the short one turns up, each refused one discarded.
    std::string line;
    for (int i = 0; i < 20; ++i) {
      try {
        line = p.reader.readline();
        if (line == "short\n") break;
      } catch (const LimitOverrunError&) {
      }
    }
    BOOST_TEST(line == "short\n");
  });
}

BOOST_AUTO_TEST_CASE(drain_blocks_above_high_water_and_resumes_at_low_water) {
  run([this] {
    StreamPair p = stream_pair();
    p.writer.set_write_buffer_limits(64 * 1024, 16 * 1024);
    std::string chunk(256 * 1024, 'd');
    // Fill the kernel buffers, then some: the writer buffers the rest.
    while (p.writer.write_buffer_size() <= 64 * 1024) p.writer.write(chunk);
    std::size_t at_drain_return = 0;
    auto drainer = fiberloop::spawn([&] {
      p.writer.drain();
      at_drain_return = p.writer.write_buffer_size();
    });
    fiberloop::sleep(0.02);
    BOOST_TEST(!drainer.done());  // nobody reads: it stays blocked
    char buf[65536];
    while (!drainer.done()) {
      net::sock_recv_into(p.raw, buf, sizeof buf);
      fiberloop::sleep(0);
    }
    BOOST_TEST(at_drain_return <= 16u * 1024);
    fiberloop::await(drainer);
    (void)loop;
  });
}

BOOST_AUTO_TEST_CASE(a_64_mib_transfer_arrives_intact_with_bounded_memory) {
  static constexpr std::size_t kTotal = 64u << 20;
  bool peak_resettable = reset_peak();
  long rss_before = resident_kib();
  long peak_before = peak_kib();
  run(
      [] {
        Socket server = listener();
        auto sender = fiberloop::spawn([&] {
          auto conn = net::sock_accept(server).first;
          auto [r, w] = net::open_streams(std::move(conn));
          std::string chunk(256 * 1024, '\0');
          for (std::size_t off = 0; off < kTotal; off += chunk.size()) {
            for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = pattern(off + i);
            w.write(chunk);
            w.drain();
          }
          w.close();
          w.wait_closed();
        });
        auto [reader, writer] = net::open_connection("127.0.0.1", server.getsockname().port());
        std::size_t got = 0, bad = 0;
        std::vector<char> data(65536);
        while (std::size_t n = reader.read_into(data.data(), data.size())) {
          for (std::size_t i = 0; i < n; ++i) bad += data[i] != pattern(got + i);
          got += n;
        }
        fiberloop::await(sender);
        BOOST_TEST(got == kTotal);
        BOOST_TEST(bad == 0u);
      },
      120.0);
  // VmHWM restarted at rss_before if clear_refs allowed it; otherwise the
  // old peak is the baseline (a weaker bound, never a false failure).
  long grown = peak_kib() - (peak_resettable ? rss_before : peak_before);
  BOOST_TEST_MESSAGE("64 MiB transfer: peak RSS growth " << grown << " KiB");
  BOOST_TEST(grown < 24 * 1024, "peak RSS grew by " << grown << " KiB");
}

BOOST_AUTO_TEST_CASE(write_eof_half_closes_and_the_reply_still_arrives) {
  run([] {
    StreamPair p = stream_pair();
    p.writer.write("request");
    p.writer.write_eof();
    BOOST_CHECK_THROW(p.writer.write("more"), RuntimeError);
    std::string got;
    for (;;) {
      std::string s = net::sock_recv(p.raw, 100);
      if (s.empty()) break;
      got += s;
    }
    BOOST_TEST(got == "request");
    net::sock_sendall(p.raw, "response");
    p.raw.shutdown(SHUT_WR);
    BOOST_TEST(p.reader.read() == "response");
  });
}

BOOST_AUTO_TEST_CASE(write_to_a_reset_peer_is_dropped_and_drain_reports_it) {
  run([] {
    StreamPair p = stream_pair();
    reset_on_close(p.raw.fd());
    p.raw.close();
    fiberloop::sleep(0.01);
    std::string chunk(64 * 1024, 'z');
    bool threw = false;
    for (int i = 0; i < 100 && !threw; ++i) {
      p.writer.write(chunk);  // never throws for a broken connection (asyncio)
      try {
        p.writer.drain();
      } catch (const std::system_error& e) {
        threw = true;
        BOOST_TEST((e.code().value() == ECONNRESET || e.code().value() == EPIPE), e.what());
        BOOST_TEST(std::string(e.what()).find("127.0.0.1:") != std::string::npos, e.what());
      }
    }
    BOOST_TEST(threw);
    BOOST_CHECK_THROW(p.reader.read(100), std::system_error);  // ECONNRESET, or...
  });
}

BOOST_AUTO_TEST_CASE(read_from_a_reset_peer_throws_naming_it) {
  run([] {
    StreamPair p = stream_pair();
    reset_on_close(p.raw.fd());
    p.raw.close();
    BOOST_CHECK_EXCEPTION(p.reader.readline(), std::system_error, [](const std::system_error& e) {
      return e.code().value() == ECONNRESET &&
             std::string(e.what()).find("sock_recv from 127.0.0.1:") != std::string::npos;
    });
  });
}

BOOST_AUTO_TEST_CASE(close_then_wait_closed_and_extra_info) {
  run([] {
    StreamPair p = stream_pair();
    auto peer = p.writer.get_extra_info("peername");
    auto local = p.writer.get_extra_info("sockname");
    BOOST_REQUIRE(peer.has_value());
    BOOST_REQUIRE(local.has_value());
    BOOST_TEST(*peer == p.raw.getsockname());
    BOOST_TEST(*local == p.raw.getpeername());
    BOOST_TEST(!p.writer.get_extra_info("cipher").has_value());
    p.writer.write("bye");
    p.writer.close();
    BOOST_TEST(p.writer.is_closing());
    p.writer.wait_closed();
    p.writer.close();  // idempotent
    BOOST_CHECK_THROW(p.writer.write("late"), RuntimeError);
    BOOST_TEST(net::sock_recv(p.raw, 100) == "bye");
    BOOST_TEST(net::sock_recv(p.raw, 100) == "");
    BOOST_TEST(p.reader.read(10) == "");  // closed by this side: the end of the stream
  });
}

BOOST_AUTO_TEST_CASE(a_reader_waiting_when_its_writer_closes_sees_the_end) {
  run([] {
    StreamPair p = stream_pair();
    auto reading = fiberloop::spawn([&] { return p.reader.readline(); });
    fiberloop::sleep(0.005);
    p.writer.close();
    BOOST_TEST(fiberloop::await(reading) == "");
  });
}

BOOST_AUTO_TEST_CASE(a_second_reading_task_is_refused_and_the_first_gets_its_data) {
  // asyncio: "readuntil() called while another coroutine is already waiting
  // for incoming data". Each read call names itself; the waiting reader is
  // left alone and its data still comes to it.
  struct Call {
    const char* name;
    std::function<void(StreamReader&)> call;
  };
  const std::vector<Call> calls = {
      {"read", [](StreamReader& r) { r.read(); }},
      {"read", [](StreamReader& r) { r.read(10); }},
      {"read", [](StreamReader& r) { r.read(8192); }},  // the straight-to-the-result path
      {"read_into",
       [](StreamReader& r) {
         char buf[16];
         r.read_into(buf, sizeof buf);
       }},
      {"readline", [](StreamReader& r) { r.readline(); }},
      {"readexactly", [](StreamReader& r) { r.readexactly(4); }},
      {"readuntil", [](StreamReader& r) { r.readuntil("|"); }},
  };
  run([&] {
    StreamPair p = stream_pair();
    int round = 0;
    for (const Call& c : calls) {
      auto first = fiberloop::spawn([&] { return p.reader.readline(); });
      fiberloop::sleep(0.005);  // the first reader now waits for data
      BOOST_REQUIRE(!first.done());
      std::string expected = std::string("StreamReader::") + c.name +
                             "() called while another task is already waiting for incoming data";
      BOOST_CHECK_EXCEPTION(c.call(p.reader), RuntimeError, [&](const RuntimeError& e) {
        BOOST_TEST(e.what() == expected);
        return true;
      });
      std::string line = "line " + std::to_string(round++) + "\n";
      net::sock_sendall(p.raw, line);
      BOOST_TEST(fiberloop::await(first) == line);
    }
    // A copy of the reader is the same stream: refused too.
    auto first = fiberloop::spawn([&] { return p.reader.readexactly(3); });
    fiberloop::sleep(0.005);
    StreamReader copy = p.reader;
    BOOST_CHECK_THROW(copy.readline(), RuntimeError);
    net::sock_sendall(p.raw, "abc");
    BOOST_TEST(fiberloop::await(first) == "abc");
    // One reader at a time is fine again.
    net::sock_sendall(p.raw, "free\n");
    BOOST_TEST(copy.readline() == "free\n");
  });
}

BOOST_AUTO_TEST_CASE(two_tasks_may_drain_one_writer_at_once) {
  // asyncio allows concurrent drain() (each waiter is woken): so does this.
  run([] {
    StreamPair p = stream_pair();
    p.writer.set_write_buffer_limits(64 * 1024, 16 * 1024);
    std::string chunk(256 * 1024, 'd');
    while (p.writer.write_buffer_size() <= 64 * 1024) p.writer.write(chunk);
    auto a = fiberloop::spawn([&] { p.writer.drain(); });
    auto b = fiberloop::spawn([&] { p.writer.drain(); });
    fiberloop::sleep(0.02);
    BOOST_TEST(!a.done());
    BOOST_TEST(!b.done());
    char buf[65536];
    while (!a.done() || !b.done()) {
      net::sock_recv_into(p.raw, buf, sizeof buf);
      fiberloop::sleep(0);
    }
    fiberloop::await(a);
    fiberloop::await(b);
    BOOST_TEST(p.writer.write_buffer_size() <= 16u * 1024);
  });
}

BOOST_AUTO_TEST_CASE(the_background_writer_is_a_named_task) {
  run([] {
    StreamPair p = stream_pair();
    std::string chunk(256 * 1024, 'w');
    while (p.writer.write_buffer_size() == 0) p.writer.write(chunk);  // the kernel is full
    std::string expected =
        "fiberloop.stream flush " + p.writer.get_extra_info("peername")->to_string();
    std::vector<std::string> names;
    for (const auto& t : fiberloop::get_running_loop().all_tasks()) names.push_back(t.get_name());
    BOOST_TEST(std::count(names.begin(), names.end(), expected) == 1,
               "names: " << LoopFixture::join(names));
    p.writer.abort();
    fiberloop::sleep(0.01);  // the writer wakes with the socket closed and ends
  });
}

BOOST_AUTO_TEST_CASE(open_connection_errors) {
  int port = unused_port();
  run([port] {
    BOOST_CHECK_EXCEPTION(net::open_connection("127.0.0.1", port), std::system_error,
                          [&](const std::system_error& e) {
                            return e.code().value() == ECONNREFUSED &&
                                   std::string(e.what()).find(std::to_string(port)) !=
                                       std::string::npos;
                          });
    BOOST_CHECK_THROW(net::open_connection("no such host", 80), std::invalid_argument);
    BOOST_CHECK_THROW(net::open_unix_connection("/nonexistent/fiberloop.sock"), std::system_error);
    StreamReader empty;
    BOOST_CHECK_THROW(empty.read(1), fiberloop::InvalidStateError);
  });
}

BOOST_AUTO_TEST_CASE(unix_connection) {
  std::string path = "/tmp/fiberloop_streams_test_" + std::to_string(::getpid());
  ::unlink(path.c_str());
  run([&] {
    Socket server(AF_UNIX, SOCK_STREAM);
    server.bind(net::Address::unix_path(path));
    server.listen(4);
    auto [r, w] = net::open_unix_connection(path);
    Socket raw = net::sock_accept(server).first;
    w.write("over unix\n");
    BOOST_TEST(net::sock_recv(raw, 100) == "over unix\n");
    net::sock_sendall(raw, "and back\n");
    BOOST_TEST(r.readline() == "and back\n");
  });
  ::unlink(path.c_str());
}

BOOST_AUTO_TEST_CASE(writelines_and_localhost) {
  run([] {
    Socket server = listener();
    auto [r, w] = net::open_connection("localhost", server.getsockname().port());
    Socket raw = net::sock_accept(server).first;
    std::vector<std::string> lines = {"one\n", "two\n", "three\n"};
    w.writelines(lines);
    w.write_eof();
    std::string got;
    while (got.size() < 14) {
      std::string s = net::sock_recv(raw, 100);
      if (s.empty()) break;
      got += s;
    }
    BOOST_TEST(got == "one\ntwo\nthree\n");
  });
}

BOOST_AUTO_TEST_SUITE_END()

// Issue 17 (read side): read sizes, the read buffer, over-long lines, the
// accepted connection's socket, a reset peer's error.
#include <netinet/tcp.h>

#include <optional>

namespace {

// Under a sanitizer freed memory waits in a quarantine (ASan) or allocations
// carry shadow (ASan, TSan): RSS bounds there are looser (still far below
// what the old behaviour grew by).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

// Ticker is a task that ticks every millisecond until stopped: a test that
// checks it still ticks after an error knows the loop and its other tasks
// kept working.
struct Ticker {
  int ticks = 0;
  bool stop = false;
  fiberloop::Task<void> task = fiberloop::spawn([this] {
    while (!stop) {
      fiberloop::sleep(0.001);
      ++ticks;
    }
  });
  ~Ticker() {
    stop = true;
    fiberloop::await(task);
  }
  // still_ticking() waits (a second or so at most) for two more ticks.
  bool still_ticking() {
    int seen = ticks;
    for (int i = 0; i < 1000 && ticks < seen + 2; ++i) fiberloop::sleep(0.001);
    return ticks >= seen + 2;
  }
};

// a_fresh_exchange_works() is a whole new connection that reads a line:
// what a test runs after an error to see that the loop still serves.
bool a_fresh_exchange_works() {
  StreamPair q = stream_pair();
  net::sock_sendall(q.raw, "fresh\n");
  return q.reader.readline() == "fresh\n";
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(streams_read_side, StreamsFixture)

BOOST_AUTO_TEST_CASE(a_large_read_of_a_small_chunk_keeps_no_spare_capacity) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "x");
    std::string one = p.reader.read(1 << 20);
    BOOST_TEST(one == "x");
    BOOST_TEST(one.capacity() < 4096u, "read(1 MiB) of 1 byte has capacity " << one.capacity());
    net::sock_sendall(p.raw, std::string(3000, 'y'));
    std::string some = p.reader.read(1 << 20);
    BOOST_TEST(some == std::string(some.size(), 'y'));
    BOOST_TEST(!some.empty());
    BOOST_TEST(some.capacity() < some.size() + 4096,
               "read of " << some.size() << " bytes has capacity " << some.capacity());
    net::sock_sendall(p.raw, "z");
    std::string mid = p.reader.read(8192);
    BOOST_TEST(mid.capacity() < 4096u, "read(8192) of 1 byte has capacity " << mid.capacity());
  });
}

BOOST_AUTO_TEST_CASE(ten_thousand_one_byte_reads_of_a_mebibyte_keep_rss_flat) {
  // Old code: each kept string held 1 MiB (1.4 GB for 1,349 chunks). The
  // loop stops early once the growth is clearly too much, so a regression
  // fails fast instead of eating the machine.
  constexpr int kReads = 10000;
  constexpr long kLimitKib = (kAsan ? 48 : 4) * 1024;
  long grown = 0;
  std::size_t kept_count = 0;
  run(
      [&] {
        StreamPair p = stream_pair();
        std::vector<std::string> kept;
        kept.reserve(kReads);
        int bad = 0;
        // Warm up: the first large read may set up a per-thread scratch.
        net::sock_sendall(p.raw, "w");
        BOOST_TEST(p.reader.read(1 << 20) == "w");
        long before = resident_kib();
        for (int i = 0; i < kReads && grown < 2 * kLimitKib; ++i) {
          net::sock_sendall(p.raw, "z");
          kept.push_back(p.reader.read(1 << 20));
          bad += kept.back() != "z";
          if (i % 32 == 0) grown = resident_kib() - before;
        }
        grown = resident_kib() - before;
        kept_count = kept.size();
        BOOST_TEST(bad == 0);
      },
      60.0);
  BOOST_TEST_MESSAGE(kept_count << " one-byte read(1 MiB) results kept: RSS grew " << grown
                                << " KiB");
  BOOST_TEST(kept_count == static_cast<std::size_t>(kReads));
  BOOST_TEST(grown < kLimitKib, "RSS grew by " << grown << " KiB over " << kept_count << " reads");
}

BOOST_AUTO_TEST_CASE(large_reads_carry_a_bulk_transfer_intact) {
  // read(n) with n from 4 KiB to 1 MiB (the path without the buffer) still
  // delivers every byte in order.
  static constexpr std::size_t kTotal = 8u << 20;
  run(
      [] {
        StreamPair p = stream_pair();
        auto sender = fiberloop::spawn([&] {
          std::string chunk(100000, '\0');
          for (std::size_t off = 0; off < kTotal; off += chunk.size()) {
            std::size_t n = std::min(chunk.size(), kTotal - off);
            for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern(off + i);
            net::sock_sendall(p.raw, std::string_view(chunk).substr(0, n));
          }
          p.raw.shutdown(SHUT_WR);
        });
        const std::size_t sizes[] = {4096, 1 << 20, 65536, 5000, 300000};
        std::size_t got = 0, bad = 0, reads = 0, roomy = 0;
        for (;;) {
          std::string s = p.reader.read(static_cast<std::ptrdiff_t>(sizes[reads++ % 5]));
          if (s.empty()) break;
          roomy += s.capacity() >= s.size() + 4096;
          for (std::size_t i = 0; i < s.size(); ++i) bad += s[i] != pattern(got + i);
          got += s.size();
        }
        fiberloop::await(sender);
        BOOST_TEST(got == kTotal);
        BOOST_TEST(bad == 0u);
        BOOST_TEST(roomy == 0u, roomy << " of " << reads << " results kept 4 KiB or more spare");
        BOOST_TEST(p.reader.at_eof());
      },
      60.0);
}

BOOST_AUTO_TEST_CASE(an_idle_connection_with_one_unread_byte_holds_one_small_buffer) {
  // A slowloris: 500 server connections, each handler waiting in readline()
  // with one byte of its line read. Old code: the second refill doubled the
  // zero-filled 16 KiB buffer to 32 KiB (50.6 KB per connection in all here).
  constexpr int kConns = 500;
  rlim_t have = raise_nofile(2 * kConns + 100);
  if (have < 2 * kConns + 50) {
    BOOST_TEST_MESSAGE("skipped: RLIMIT_NOFILE is " << have);
    return;
  }
  long base = 0, waiting = 0, one_byte = 0;
  run(
      [&] {
        int ended = 0;
        auto handler = [&](StreamReader r, StreamWriter w) {
          try {
            r.readline();
          } catch (const std::exception&) {
          }
          ++ended;
          w.close();
        };
        // Warm up the handler's code path and the stack pool with one connection.
        {
          net::Server warm = net::start_server(handler, "127.0.0.1", 0);
          Socket s(AF_INET, SOCK_STREAM);
          net::sock_connect(s, warm.sockets()[0]);
          net::sock_sendall(s, "warm\n");
          BOOST_TEST(net::sock_recv(s, 10) == "");
          warm.close();
          warm.wait_closed();
          ended = 0;
        }
        auto settle = [] {
          for (int i = 0; i < 20; ++i) fiberloop::sleep(0.005);
        };
        std::vector<Socket> clients;
        clients.reserve(kConns);
        net::Server server = net::start_server(handler, "127.0.0.1", 0, {.backlog = kConns});
        settle();
        base = resident_kib();
        for (int i = 0; i < kConns; ++i) {
          clients.emplace_back(AF_INET, SOCK_STREAM);
          net::sock_connect(clients.back(), server.sockets()[0]);
        }
        const auto all = static_cast<std::size_t>(kConns);
        for (int i = 0; i < 1000 && server.connection_count() < all; ++i) fiberloop::sleep(0.005);
        settle();
        BOOST_TEST(server.connection_count() == all);
        waiting = resident_kib();
        for (Socket& c : clients) net::sock_sendall(c, "G");
        settle();
        one_byte = resident_kib();
        BOOST_TEST(ended == 0);
        for (Socket& c : clients) net::sock_sendall(c, "ET /\n");  // every line completes
        for (int i = 0; i < 200 && ended < kConns; ++i) fiberloop::sleep(0.005);
        BOOST_TEST(ended == kConns);
        clients.clear();
        server.close();
        server.wait_closed();
      },
      60.0);
  double per_conn = 1024.0 * (one_byte - base) / kConns;
  double per_byte = 1024.0 * (one_byte - waiting) / kConns;
  BOOST_TEST_MESSAGE("idle connection with 1 unread byte: " << per_conn << " B in all, " << per_byte
                                                            << " B of it after the byte");
  // About 9 KB in all here; 20.9 KB under meson test, whose MALLOC_PERTURB_
  // writes every allocated byte, so all of the 16 KiB buffer is resident.
  if (!kAsan) BOOST_TEST(per_conn <= 24 * 1024, "an idle connection holds " << per_conn << " B");
  BOOST_TEST(per_byte <= 8.0 * 1024, "one unread byte grew a connection by " << per_byte << " B");
}

BOOST_AUTO_TEST_CASE(an_over_long_line_is_one_error_and_the_next_line_follows) {
  // asyncio's readline raises once and the line is gone: the next readline
  // returns the line after it, however the long line arrives.
  run(
      [] {
        Ticker ticker;
        for (std::size_t chunk : {std::size_t{0}, std::size_t{1000}, std::size_t{16384 + 7}}) {
          BOOST_TEST_CONTEXT("chunk " << chunk) {
            StreamPair p = stream_pair();
            std::string long_line(200 * 1024, 'L');
            long_line += '\n';
            auto sender = fiberloop::spawn([&] {
              if (chunk == 0) {
                net::sock_sendall(p.raw, long_line + "next\nafter\n");
                return;
              }
              for (std::size_t off = 0; off < long_line.size(); off += chunk) {
                net::sock_sendall(p.raw, std::string_view(long_line).substr(off, chunk));
                fiberloop::sleep(0);
              }
              net::sock_sendall(p.raw, "next\nafter\n");
            });
            int errors = 0;
            std::string line;
            for (int i = 0; i < 100; ++i) {
              try {
                line = p.reader.readline();
                break;
              } catch (const LimitOverrunError&) {
                ++errors;
              }
            }
            BOOST_TEST(errors == 1);
            // (the double parentheses: a wrong line is 200 KB, not to be printed whole)
            BOOST_TEST((line == "next\n"), "line: " << line.substr(0, 40) << "...");
            std::string after = p.reader.readline();
            BOOST_TEST((after == "after\n"), "then: " << after.substr(0, 40) << "...");
            fiberloop::await(sender);
          }
        }
        BOOST_TEST(ticker.still_ticking());
        BOOST_TEST(a_fresh_exchange_works());
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(an_over_long_last_line_without_newline_ends_the_stream) {
  run([] {
    StreamPair p = stream_pair({.limit = 100});
    auto sender = fiberloop::spawn([&] {
      net::sock_sendall(p.raw, std::string(5000, 'x'));
      p.raw.shutdown(SHUT_WR);
    });
    BOOST_CHECK_THROW(p.reader.readline(), LimitOverrunError);
    BOOST_TEST(p.reader.readline() == "");
    BOOST_TEST(p.reader.at_eof());
    fiberloop::await(sender);
  });
}

BOOST_AUTO_TEST_CASE(a_line_over_the_limit_then_other_reads_see_the_next_line) {
  // The refused line is gone whatever reads next: read(), readexactly(),
  // read_into() and readuntil() start after it too.
  run([] {
    for (int call = 0; call < 4; ++call) {
      BOOST_TEST_CONTEXT("call " << call) {
        StreamPair p = stream_pair({.limit = 100});
        net::sock_sendall(p.raw, std::string(150, 'a'));
        BOOST_CHECK_THROW(p.reader.readline(), LimitOverrunError);
        net::sock_sendall(p.raw, std::string(300, 'b') + "\nnext|");
        std::string got;
        if (call == 0) {
          while (got.size() < 5) got += p.reader.read(100);
        } else if (call == 1) {
          got = p.reader.readexactly(5);
        } else if (call == 2) {
          char buf[5];
          std::size_t n = 0;
          while (n < 5) n += p.reader.read_into(buf + n, 5 - n);
          got.assign(buf, 5);
        } else {
          got = p.reader.readuntil("|");
        }
        BOOST_TEST(got.substr(0, 4) == "next");
      }
    }
  });
}

BOOST_AUTO_TEST_CASE(drain_after_the_peer_reset_is_econnreset) {
  // asyncio: ConnectionResetError. Whether a reader saw the reset first (it
  // consumes the socket's pending error: the next send says EPIPE), or the
  // peer had half-closed before resetting, the writer says ECONNRESET.
  run(
      [] {
        Ticker ticker;
        for (int variant = 0; variant < 3; ++variant) {
          BOOST_TEST_CONTEXT("variant " << variant) {
            StreamPair p = stream_pair();
            std::optional<fiberloop::Task<int>> reading;
            if (variant == 1) {
              reading = fiberloop::spawn([&] {
                try {
                  p.reader.readline();
                  return 0;
                } catch (const std::system_error& e) {
                  return e.code().value();
                }
              });
              fiberloop::sleep(0.005);
            }
            if (variant == 2) {
              // The peer half-closes and is read to the end; what it gets
              // then is answered with RST.
              p.raw.shutdown(SHUT_WR);
              BOOST_TEST(p.reader.read() == "");
              p.writer.write("one");
              fiberloop::sleep(0.005);
            }
            reset_on_close(p.raw.fd());
            p.raw.close();
            fiberloop::sleep(0.01);
            if (reading) BOOST_TEST(fiberloop::await(*reading) == ECONNRESET);
            std::string big(4 << 20, 'r');
            bool threw = false;
            for (int i = 0; i < 4 && !threw; ++i) {
              p.writer.write(big);
              try {
                p.writer.drain();
              } catch (const std::system_error& e) {
                threw = true;
                BOOST_TEST(e.code().value() == ECONNRESET, e.what());
                BOOST_TEST(std::string(e.what()).find("127.0.0.1:") != std::string::npos, e.what());
              }
            }
            BOOST_TEST(threw);
            BOOST_CHECK_EXCEPTION(
                p.reader.read(100), std::system_error,
                [](const std::system_error& e) { return e.code().value() == ECONNRESET; });
          }
        }
        BOOST_TEST(ticker.still_ticking());
        BOOST_TEST(a_fresh_exchange_works());
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(a_server_handler_draining_into_a_reset_client_gets_econnreset) {
  run(
      [] {
        Ticker ticker;
        int code = 0;
        std::string what;
        bool done = false;
        net::Server server = net::start_server(
            [&](StreamReader r, StreamWriter w) {
              // A reader task, as a full-duplex handler has, sees the reset too.
              auto reader = fiberloop::spawn([r]() mutable {
                try {
                  while (!r.read(4096).empty()) {
                  }
                } catch (const std::system_error&) {
                }
              });
              try {
                std::string big(1 << 20, 'b');
                for (int i = 0; i < 64; ++i) {
                  w.write(big);
                  w.drain();
                }
              } catch (const std::system_error& e) {
                code = e.code().value();
                what = e.what();
              }
              fiberloop::await(reader);
              done = true;
            },
            "127.0.0.1", 0);
        Socket s(AF_INET, SOCK_STREAM);
        net::sock_connect(s, server.sockets()[0]);
        BOOST_TEST(net::sock_recv(s, 1000).size() > 0u);  // the reply has begun
        reset_on_close(s.fd());
        s.close();
        for (int i = 0; i < 400 && !done; ++i) fiberloop::sleep(0.005);
        BOOST_REQUIRE(done);
        BOOST_TEST(code == ECONNRESET, what);
        BOOST_TEST(what.find("127.0.0.1:") != std::string::npos, what);
        server.close();
        server.wait_closed();
        BOOST_TEST(ticker.still_ticking());
        BOOST_TEST(a_fresh_exchange_works());
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(socket_options_on_an_accepted_connection) {
  // asyncio's get_extra_info("socket"): StreamWriter::socket().
  run([] {
    Ticker ticker;
    std::vector<int> seen;  // SO_KEEPALIVE before, after; TCP_NODELAY after
    bool closed_throws = false;
    net::Server server = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          auto get = [&](int level, int name) {
            int v = -1;
            socklen_t len = sizeof v;
            BOOST_REQUIRE(::getsockopt(w.socket().fd(), level, name, &v, &len) == 0);
            return v;
          };
          seen.push_back(get(SOL_SOCKET, SO_KEEPALIVE));
          w.socket().setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
          seen.push_back(get(SOL_SOCKET, SO_KEEPALIVE));
          StreamWriter copy = w;  // a copy is the same connection
          copy.socket().setsockopt(IPPROTO_TCP, TCP_NODELAY, 0);
          seen.push_back(get(IPPROTO_TCP, TCP_NODELAY));
          BOOST_TEST(&copy.socket() == &w.socket());
          w.write(r.readline());
          w.close();
          w.wait_closed();
          BOOST_TEST(w.socket().fd() < 0);
          try {
            w.socket().setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
          } catch (const std::system_error& e) {
            closed_throws = e.code().value() == EBADF;
          }
        },
        "127.0.0.1", 0);
    auto [r, w] = net::open_connection("127.0.0.1", server.sockets()[0].port());
    w.write("ping\n");
    BOOST_TEST(r.readline() == "ping\n");
    BOOST_TEST(r.read() == "");
    server.close();
    server.wait_closed();
    BOOST_TEST((seen == std::vector<int>{0, 1, 0}));
    BOOST_TEST(closed_throws);
    // The client's side too: open_connection set TCP_NODELAY (as asyncio).
    int v = 0;
    socklen_t len = sizeof v;
    BOOST_TEST(::getsockopt(w.socket().fd(), IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0);
    BOOST_TEST(v != 0);
    StreamWriter empty;
    BOOST_CHECK_THROW(empty.socket(), fiberloop::InvalidStateError);
    BOOST_TEST(ticker.still_ticking());
  });
}

BOOST_AUTO_TEST_SUITE_END()
