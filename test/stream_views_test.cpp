// StreamReader's zero-copy reads (net/streams.hpp): buffered(), read_view(),
// readline_view(), readuntil_view(), readexactly_view() and readline_into(),
// over loopback: a stream pair on one end of a TCP connection, a raw socket
// on the other.
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "death.hpp"
#include "loop_fixture.hpp"
#include "net_helpers.hpp"

using fiberloop::IncompleteReadError;
using fiberloop::LimitOverrunError;
using fiberloop::RuntimeError;
using net::Socket;
using net::StreamReader;
using net::StreamWriter;

namespace {

struct ViewsFixture : LoopFixture {
  ViewsFixture() { ::signal(SIGPIPE, SIG_DFL); }
};


// eventually(pred) yields to the loop until pred() holds, a bounded number
// of iterations (loopback delivers within a few): whether it came to hold.
template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 1000 && !pred(); ++i) fiberloop::sleep(0);
  return pred();
}

// waiting_task(fn) starts fn in a task and lets the loop run it until it
// waits: fn is a read that has no data to return yet, and must not finish.
template <class Fn>
auto waiting_task(Fn fn) {
  auto task = fiberloop::spawn(std::move(fn));
  fiberloop::sleep(0);
  fiberloop::sleep(0);
  BOOST_REQUIRE_MESSAGE(!task.done(), "the read did not wait for data");
  return task;
}

// still_serving() is what a test checks after an error: another task still
// runs, and a whole new connection reads a line (through a view).
bool still_serving() {
  auto other = fiberloop::spawn([] {
    fiberloop::sleep(0);
    return 42;
  });
  if (fiberloop::await(other) != 42) return false;
  StreamPair q = stream_pair();
  net::sock_sendall(q.raw, "fresh\nline\n");
  if (q.reader.readline_view() != "fresh\n") return false;
  return q.reader.readline_view() == "line\n";
}

// pattern_string(off, n) is n bytes of the transfer pattern from offset off.
std::string pattern_string(std::size_t off, std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = pattern(off + i);
  return s;
}

// A ViewCall is one of the new calls, its result copied out (the tables
// below check results; the view tests check the views themselves).
struct ViewCall {
  const char* name;
  std::function<std::string(StreamReader&)> call;
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(stream_views, ViewsFixture)

// ---- normal results, consumption, buffered() ----

BOOST_AUTO_TEST_CASE(each_view_call_returns_its_bytes_and_consumes_them) {
  run([] {
    StreamPair p = stream_pair();
    BOOST_TEST(p.reader.buffered() == 0u);  // a fresh reader holds nothing
    const std::string burst = "first line\nkey: value\r\nXYZabcdefgh\nline four\ntail";
    net::sock_sendall(p.raw, burst);
    std::size_t left = burst.size();

    std::string_view line = p.reader.readline_view();
    BOOST_TEST(line == "first line\n");
    left -= line.size();
    BOOST_TEST(p.reader.buffered() == left);  // the burst arrived; the line is read

    std::string_view header = p.reader.readuntil_view("\r\n");
    BOOST_TEST(header == "key: value\r\n");
    left -= header.size();
    BOOST_TEST(p.reader.buffered() == left);

    std::string_view three = p.reader.readexactly_view(3);
    BOOST_TEST(three == "XYZ");
    left -= 3;
    BOOST_TEST(p.reader.buffered() == left);

    std::string_view some = p.reader.read_view(5);
    BOOST_TEST(some == "abcde");
    left -= 5;
    BOOST_TEST(p.reader.buffered() == left);

    char buf[64];
    std::memset(buf, '#', sizeof buf);
    std::size_t n = p.reader.readline_into(buf, sizeof buf);
    BOOST_TEST(std::string_view(buf, n) == "fgh\n");
    BOOST_TEST(buf[n] == '#');  // nothing past the line is written
    left -= n;
    BOOST_TEST(p.reader.buffered() == left);

    // The string calls see what follows the views.
    BOOST_TEST(p.reader.readline() == "line four\n");
    BOOST_TEST(p.reader.buffered() == 4u);
    BOOST_TEST(p.reader.read(100) == "tail");
    BOOST_TEST(p.reader.buffered() == 0u);
    BOOST_TEST(!p.reader.at_eof());
  });
}

BOOST_AUTO_TEST_CASE(the_zero_length_calls_return_nothing_and_consume_nothing) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "abc\n");
    BOOST_TEST(p.reader.read_view(1) == "a");
    BOOST_TEST(p.reader.read_view(0) == "");
    BOOST_TEST(p.reader.readexactly_view(0) == "");
    BOOST_TEST(p.reader.buffered() == 3u);
    BOOST_CHECK_THROW(p.reader.readuntil_view(""), std::invalid_argument);
    BOOST_TEST(p.reader.buffered() == 3u);
    BOOST_TEST(p.reader.readline_view() == "bc\n");
  });
}

BOOST_AUTO_TEST_CASE(views_read_what_was_buffered_without_waiting_for_more) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "one\ntwo\nthree");
    BOOST_TEST(p.reader.readline_view() == "one\n");
    BOOST_TEST(p.reader.buffered() == 9u);
    // read_view(n) takes what is buffered, up to n: it does not wait to fill n.
    BOOST_TEST(p.reader.read_view(1000) == "two\nthree");
    BOOST_TEST(p.reader.buffered() == 0u);
    // With nothing buffered it waits for at least one byte.
    auto later = waiting_task([&] { return p.reader.read_view(); });
    net::sock_sendall(p.raw, "Z");
    BOOST_TEST(fiberloop::await(later) == "Z");
  });
}

BOOST_AUTO_TEST_CASE(a_line_sent_in_pieces_reads_whole_through_each_call) {
  // The peer sends the record in pieces; after each piece the reader has
  // taken it in (buffered() grows) and is still waiting for the rest.
  const std::vector<std::string> pieces = {"he", "llo, w", "orld\r", "\n"};
  const std::string whole = "hello, world\r\n";
  char line_buf[64];
  const std::vector<ViewCall> calls = {
      {"readline_view", [](StreamReader& r) { return std::string(r.readline_view()); }},
      {"readuntil_view", [](StreamReader& r) { return std::string(r.readuntil_view("\r\n")); }},
      {"readexactly_view",
       [&](StreamReader& r) { return std::string(r.readexactly_view(whole.size())); }},
      {"readline_into",
       [&](StreamReader& r) {
         std::size_t n = r.readline_into(line_buf, sizeof line_buf);
         return std::string(line_buf, n);
       }},
  };
  run([&] {
    for (const ViewCall& c : calls) {
      BOOST_TEST_CONTEXT(c.name) {
        StreamPair p = stream_pair();
        auto reading = fiberloop::spawn([&] { return c.call(p.reader); });
        std::size_t sent = 0;
        for (std::size_t i = 0; i < pieces.size(); ++i) {
          BOOST_REQUIRE(!reading.done());
          net::sock_sendall(p.raw, pieces[i]);
          sent += pieces[i].size();
          if (i + 1 == pieces.size()) break;
          BOOST_REQUIRE(eventually([&] { return p.reader.buffered() == sent; }));
        }
        BOOST_TEST(fiberloop::await(reading) == whole);
        BOOST_TEST(p.reader.buffered() == 0u);
        net::sock_sendall(p.raw, "next\n");
        BOOST_TEST(p.reader.readline_view() == "next\n");
      }
    }
    // The view itself (not a copy), handed back by the task that read it.
    StreamPair p = stream_pair();
    auto reading = fiberloop::spawn([&] { return p.reader.readline_view(); });
    for (const std::string& piece : pieces) {
      net::sock_sendall(p.raw, piece);
      fiberloop::sleep(0);
    }
    std::string_view view = fiberloop::await(reading);
    BOOST_TEST(view == whole);
    // read_view() of a piece is that piece: it waits for at least one byte only.
    auto some = fiberloop::spawn([&] { return p.reader.read_view(); });
    fiberloop::sleep(0);
    BOOST_TEST(!some.done());
    net::sock_sendall(p.raw, "par");
    BOOST_TEST(fiberloop::await(some) == "par");
  });
}

BOOST_AUTO_TEST_CASE(a_multibyte_separator_split_across_sends_is_found) {
  // A false start ("--END-x") and the separator itself both cut by the sends.
  run([] {
    StreamPair p = stream_pair();
    auto reading = fiberloop::spawn([&] { return p.reader.readuntil_view("--END--"); });
    for (std::string_view piece : {"body-", "-E", "N", "D-", "x--", "END", "-", "-more"}) {
      net::sock_sendall(p.raw, piece);
      fiberloop::sleep(0);
      fiberloop::sleep(0);
    }
    BOOST_TEST(fiberloop::await(reading) == "body--END-x--END--");
    BOOST_TEST(p.reader.readexactly_view(4) == "more");
    BOOST_TEST(p.reader.buffered() == 0u);
  });
}

// ---- end of stream ----

BOOST_AUTO_TEST_CASE(read_view_at_the_end_of_stream_is_empty) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "abc");
    p.raw.shutdown(SHUT_WR);
    BOOST_TEST(p.reader.read_view(2) == "ab");
    BOOST_TEST(p.reader.read_view() == "c");
    BOOST_TEST(p.reader.read_view() == "");
    BOOST_TEST(p.reader.at_eof());
    BOOST_TEST(p.reader.read_view() == "");  // and stays so
    BOOST_TEST(p.reader.readline_view() == "");
    BOOST_TEST(p.reader.buffered() == 0u);
  });
}

BOOST_AUTO_TEST_CASE(readline_view_at_the_end_gives_what_is_left_then_empty) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "whole\nno newline");
    p.raw.close();
    BOOST_TEST(p.reader.readline_view() == "whole\n");
    BOOST_TEST(!p.reader.at_eof());
    std::string_view rest = p.reader.readline_view();
    BOOST_TEST(rest == "no newline");
    BOOST_TEST(p.reader.at_eof());
    BOOST_TEST(rest == "no newline");  // at_eof() is not a read
    BOOST_TEST(p.reader.readline_view() == "");
    BOOST_TEST(p.reader.readline_view() == "");
    char buf[16];
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 0u);
  });
}

BOOST_AUTO_TEST_CASE(readline_into_at_the_end_gives_what_is_left_then_zero) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "one\ntwo");
    p.raw.shutdown(SHUT_WR);
    char buf[8];
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 4u);
    BOOST_TEST(std::string_view(buf, 4) == "one\n");
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 3u);
    BOOST_TEST(std::string_view(buf, 3) == "two");
    BOOST_TEST(p.reader.at_eof());
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 0u);
  });
}

BOOST_AUTO_TEST_CASE(readuntil_view_at_the_end_throws_with_everything_left) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "a|rest without separator");
    p.raw.shutdown(SHUT_WR);
    BOOST_TEST(p.reader.readuntil_view("|") == "a|");
    try {
      p.reader.readuntil_view("|");
      BOOST_FAIL("readuntil_view did not throw");
    } catch (const IncompleteReadError& e) {
      BOOST_TEST(e.partial == "rest without separator");
      BOOST_TEST(!e.expected.has_value());
    }
    BOOST_TEST(p.reader.at_eof());
    BOOST_TEST(p.reader.buffered() == 0u);
    // Still usable: the end of stream, as each call reports it.
    try {
      p.reader.readuntil_view("|");
      BOOST_FAIL("readuntil_view did not throw again");
    } catch (const IncompleteReadError& e) {
      BOOST_TEST(e.partial == "");
    }
    BOOST_TEST(p.reader.read_view() == "");
    BOOST_TEST(p.reader.readline_view() == "");
    BOOST_TEST(p.reader.read() == "");
    BOOST_TEST(still_serving());
  });
}

BOOST_AUTO_TEST_CASE(readexactly_view_at_the_end_throws_with_what_did_arrive) {
  run([] {
    StreamPair p = stream_pair();
    auto sender = fiberloop::spawn([&] {
      net::sock_sendall(p.raw, "0123");
      fiberloop::sleep(0);
      net::sock_sendall(p.raw, "456");
      fiberloop::sleep(0);
      p.raw.shutdown(SHUT_WR);
    });
    BOOST_TEST(p.reader.readexactly_view(2) == "01");
    try {
      p.reader.readexactly_view(10);
      BOOST_FAIL("readexactly_view did not throw");
    } catch (const IncompleteReadError& e) {
      BOOST_TEST(e.partial == "23456");
      BOOST_TEST(e.expected.value() == 10u);
    }
    BOOST_TEST(p.reader.at_eof());
    try {
      p.reader.readexactly_view(1);
      BOOST_FAIL("readexactly_view(1) did not throw at the end");
    } catch (const IncompleteReadError& e) {
      BOOST_TEST(e.partial == "");
      BOOST_TEST(e.expected.value() == 1u);
    }
    BOOST_TEST(p.reader.read_view() == "");
    BOOST_TEST(p.reader.readexactly_view(0) == "");
    fiberloop::await(sender);
    BOOST_TEST(still_serving());
  });
}

// ---- limits ----

BOOST_AUTO_TEST_CASE(readline_view_of_a_line_at_the_limit_fits_one_over_is_refused) {
  run([] {
    StreamPair p = stream_pair({.limit = 16});
    const std::string at_limit(16, 'a');  // 16 bytes and the newline: as asyncio, it fits
    const std::string over(17, 'b');
    net::sock_sendall(p.raw, at_limit + "\n" + over + "\nafter\n");
    BOOST_TEST(p.reader.readline_view() == at_limit + "\n");
    BOOST_CHECK_THROW(p.reader.readline_view(), LimitOverrunError);
    BOOST_TEST(p.reader.readline_view() == "after\n");
    BOOST_TEST(p.reader.buffered() == 0u);
  });
}

BOOST_AUTO_TEST_CASE(an_over_long_line_is_one_error_and_readline_view_returns_the_next) {
  run(
      [] {
        const std::string long_line = std::string(300, 'L') + "\n";
        // In one burst.
        {
          StreamPair p = stream_pair({.limit = 100});
          net::sock_sendall(p.raw, long_line + "next\nafter\n");
          BOOST_CHECK_THROW(p.reader.readline_view(), LimitOverrunError);
          BOOST_TEST(p.reader.readline_view() == "next\n");
          BOOST_TEST(p.reader.readline_view() == "after\n");
        }
        // In pieces, sent by a peer task while the reader reads.
        for (std::size_t chunk : {1, 30, 99, 101, 150, 299}) {
          BOOST_TEST_CONTEXT("chunk " << chunk) {
            StreamPair p = stream_pair({.limit = 100});
            auto sender = fiberloop::spawn([&] {
              for (std::size_t off = 0; off < long_line.size(); off += chunk) {
                net::sock_sendall(p.raw, std::string_view(long_line).substr(off, chunk));
                fiberloop::sleep(0);
              }
              net::sock_sendall(p.raw, "next\nafter\n");
            });
            int errors = 0;
            std::string_view line;
            for (int i = 0; i < 10; ++i) {
              try {
                line = p.reader.readline_view();
                break;
              } catch (const LimitOverrunError&) {
                ++errors;
              }
            }
            BOOST_TEST(errors == 1);
            BOOST_TEST(line == "next\n");
            BOOST_TEST(p.reader.readline_view() == "after\n");
            fiberloop::await(sender);
          }
        }
        // Refused before its newline was even sent: the rest is dropped as it
        // arrives, and the next call waits for the line after it.
        {
          StreamPair p = stream_pair({.limit = 100});
          net::sock_sendall(p.raw, std::string(150, 'L'));
          BOOST_CHECK_THROW(p.reader.readline_view(), LimitOverrunError);
          BOOST_TEST(p.reader.buffered() == 0u);
          auto next = fiberloop::spawn([&] { return p.reader.readline_view(); });
          fiberloop::sleep(0);
          BOOST_TEST(!next.done());
          net::sock_sendall(p.raw, std::string(20000, 'L'));  // more than a buffer's fill
          fiberloop::sleep(0);
          fiberloop::sleep(0);
          BOOST_TEST(!next.done());
          BOOST_TEST(p.reader.buffered() == 0u);  // dropped, not kept
          net::sock_sendall(p.raw, "LLL\nnext\nafter\n");
          BOOST_TEST(fiberloop::await(next) == "next\n");
          BOOST_TEST(p.reader.readline_view() == "after\n");
        }
        BOOST_TEST(still_serving());
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(an_over_long_last_line_ends_the_stream_after_its_error) {
  run([] {
    StreamPair p = stream_pair({.limit = 100});
    net::sock_sendall(p.raw, "ok\n" + std::string(5000, 'x'));
    p.raw.shutdown(SHUT_WR);
    BOOST_TEST(p.reader.readline_view() == "ok\n");
    BOOST_CHECK_THROW(p.reader.readline_view(), LimitOverrunError);
    BOOST_TEST(p.reader.readline_view() == "");
    BOOST_TEST(p.reader.at_eof());
  });
}

BOOST_AUTO_TEST_CASE(readuntil_view_past_the_limit_keeps_the_bytes_readable) {
  run([] {
    StreamPair p = stream_pair({.limit = 16});
    // The separator at offset 16 (the limit) is found; at 17 it is past it.
    net::sock_sendall(p.raw, "0123456789abcdef|0123456789abcdefg|rest|");
    BOOST_TEST(p.reader.readuntil_view("|") == "0123456789abcdef|");
    try {
      p.reader.readuntil_view("|");
      BOOST_FAIL("readuntil_view did not throw");
    } catch (const LimitOverrunError& e) {
      BOOST_TEST(e.consumed == 17u);
    }
    BOOST_TEST(p.reader.buffered() == 23u);  // nothing consumed
    BOOST_TEST(p.reader.readexactly_view(10) == "0123456789");
    BOOST_TEST(p.reader.readuntil_view("|") == "abcdefg|");
    BOOST_TEST(p.reader.readuntil_view("|") == "rest|");
    // Not found within the limit: the same, and the bytes read on.
    net::sock_sendall(p.raw, std::string(40, 'n'));
    BOOST_CHECK_THROW(p.reader.readuntil_view("|"), LimitOverrunError);
    BOOST_TEST(p.reader.buffered() == 40u);
    BOOST_CHECK_THROW(p.reader.readuntil_view("|"), LimitOverrunError);  // as often as asked
    BOOST_TEST(p.reader.read_view() == std::string(40, 'n'));
    net::sock_sendall(p.raw, "short|");
    BOOST_TEST(p.reader.readuntil_view("|") == "short|");
  });
}

BOOST_AUTO_TEST_CASE(readexactly_view_over_the_limit_is_refused_and_reads_nothing) {
  run([] {
    StreamPair p = stream_pair({.limit = 1000});
    // Nothing has come: refused at once, not after waiting for bytes.
    BOOST_CHECK_EXCEPTION(p.reader.readexactly_view(1001), LimitOverrunError,
                          [](const LimitOverrunError& e) { return e.consumed == 0; });
    BOOST_TEST(p.reader.buffered() == 0u);
    const std::string data = pattern_string(0, 3000);
    net::sock_sendall(p.raw, data);
    BOOST_TEST(p.reader.readexactly_view(10) == data.substr(0, 10));
    const std::size_t before = p.reader.buffered();
    BOOST_TEST(before == 2990u);
    try {
      p.reader.readexactly_view(1001);
      BOOST_FAIL("readexactly_view(limit + 1) did not throw");
    } catch (const LimitOverrunError& e) {
      BOOST_TEST(e.consumed == 0u);
      BOOST_TEST(std::string(e.what()).find("readexactly()") != std::string::npos, e.what());
    }
    BOOST_CHECK_THROW(p.reader.readexactly_view(static_cast<std::size_t>(-1)), LimitOverrunError);
    BOOST_TEST(p.reader.buffered() == before);
    // The same bytes, through the string call, which takes any n.
    BOOST_TEST(p.reader.readexactly(1001) == data.substr(10, 1001));
    // Exactly the limit is fine.
    BOOST_TEST(p.reader.readexactly_view(1000) == data.substr(1011, 1000));
    BOOST_TEST(p.reader.read_view() == data.substr(2011));
  });
}

BOOST_AUTO_TEST_CASE(readexactly_view_of_the_default_limit_arriving_in_pieces) {
  // 64 KiB at once: the buffer grows from its first 16 KiB while the bytes
  // come, with some unread bytes ahead of them.
  run([] {
    StreamPair p = stream_pair();
    const std::size_t limit = p.reader.limit();
    BOOST_REQUIRE(limit == 64u * 1024);
    const std::string data = pattern_string(0, 3 + limit + 5);
    auto sender = fiberloop::spawn([&] {
      for (std::size_t off = 0; off < data.size(); off += 7001) {
        net::sock_sendall(p.raw, std::string_view(data).substr(off, 7001));
        fiberloop::sleep(0);
      }
    });
    BOOST_TEST(p.reader.readexactly_view(3) == data.substr(0, 3));
    std::string_view big = p.reader.readexactly_view(limit);
    BOOST_TEST(big.size() == limit);
    BOOST_TEST((big == std::string_view(data).substr(3, limit)));
    BOOST_TEST(p.reader.readexactly_view(5) == data.substr(3 + limit));
    fiberloop::await(sender);
  });
}

BOOST_AUTO_TEST_CASE(readline_into_takes_a_line_that_fits_and_refuses_one_that_does_not) {
  run([] {
    StreamPair p = stream_pair();
    char buf[16];
    auto clear = [&] { std::memset(buf, '#', sizeof buf); };
    auto untouched_from = [&](std::size_t at) {
      return std::all_of(buf + at, buf + sizeof buf, [](char ch) { return ch == '#'; });
    };
    net::sock_sendall(p.raw, "1234567\n12345678\nok\n");
    // Seven bytes and the newline: exactly len 8.
    clear();
    BOOST_TEST(p.reader.readline_into(buf, 8) == 8u);
    BOOST_TEST(std::string_view(buf, 8) == "1234567\n");
    BOOST_TEST(untouched_from(8));
    // Eight and the newline do not fit in 8: refused, and that line only is gone.
    clear();
    BOOST_CHECK_THROW(p.reader.readline_into(buf, 8), LimitOverrunError);
    BOOST_TEST(untouched_from(8));
    BOOST_TEST(p.reader.buffered() == 3u);
    BOOST_TEST(p.reader.readline_into(buf, 8) == 3u);
    BOOST_TEST(std::string_view(buf, 3) == "ok\n");

    // Refused before its newline arrived: the rest is dropped when it comes.
    net::sock_sendall(p.raw, "abcdefghij");
    BOOST_CHECK_THROW(p.reader.readline_into(buf, 8), LimitOverrunError);
    auto next = waiting_task([&] { return p.reader.readline_into(buf, 8); });
    net::sock_sendall(p.raw, "klmnop\nnext\n");
    BOOST_TEST(fiberloop::await(next) == 5u);
    BOOST_TEST(std::string_view(buf, 5) == "next\n");

    // A line one byte short of deciding waits for that byte.
    net::sock_sendall(p.raw, "abcdefg");
    auto fits = waiting_task([&] { return p.reader.readline_into(buf, 8); });
    net::sock_sendall(p.raw, "\n");
    BOOST_TEST(fiberloop::await(fits) == 8u);
    BOOST_TEST(std::string_view(buf, 8) == "abcdefg\n");
    net::sock_sendall(p.raw, "abcdefg");
    auto too_long = waiting_task([&] { return p.reader.readline_into(buf, 8); });
    net::sock_sendall(p.raw, "h\nafter\n");
    BOOST_CHECK_THROW(fiberloop::await(too_long), LimitOverrunError);
    BOOST_TEST(p.reader.readline_view() == "after\n");

    // len 0 is refused before anything is read.
    net::sock_sendall(p.raw, "zero\n");
    BOOST_CHECK_THROW(p.reader.readline_into(buf, 0), std::invalid_argument);
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 5u);
    BOOST_TEST(std::string_view(buf, 5) == "zero\n");
    // len 1 holds the empty line only.
    net::sock_sendall(p.raw, "\nx\ny\n");
    clear();
    BOOST_TEST(p.reader.readline_into(buf, 1) == 1u);
    BOOST_TEST(buf[0] == '\n');
    BOOST_TEST(untouched_from(1));
    BOOST_CHECK_THROW(p.reader.readline_into(buf, 1), LimitOverrunError);
    BOOST_TEST(untouched_from(1));
    BOOST_TEST(p.reader.readline_view() == "y\n");
    BOOST_TEST(still_serving());
  });
}

BOOST_AUTO_TEST_CASE(readline_into_keeps_the_stream_limit_too) {
  run([] {
    StreamPair p = stream_pair({.limit = 10});
    char buf[100];
    net::sock_sendall(p.raw, std::string(10, 'a') + "\n" + std::string(11, 'b') + "\nc\n");
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 11u);  // the limit's 10 and "\n"
    BOOST_CHECK_THROW(p.reader.readline_into(buf, sizeof buf), LimitOverrunError);
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 2u);
    BOOST_TEST(std::string_view(buf, 2) == "c\n");
  });
}

// ---- view validity ----

BOOST_AUTO_TEST_CASE(a_view_stays_intact_while_the_task_does_anything_but_read_this_reader) {
  run([] {
    StreamPair p = stream_pair();
    StreamPair q = stream_pair();
    const std::string first = "the first line, to be kept in view\n";
    net::sock_sendall(p.raw, first + "second\n");
    const std::string_view view = p.reader.readline_view();
    BOOST_REQUIRE(view == first);
    const char* const where = view.data();
    auto intact = [&] { return view.data() == where && view == first; };

    // Yields, awaits, other tasks.
    fiberloop::sleep(0);
    BOOST_TEST(intact());
    auto other = fiberloop::spawn([] {
      fiberloop::sleep(0);
      return 7;
    });
    BOOST_TEST(fiberloop::await(other) == 7);
    BOOST_TEST(intact());

    // The peer sends far more than the buffer holds while the loop runs.
    const std::string flood = pattern_string(0, 200 * 1024);
    auto flooder = fiberloop::spawn([&] { net::sock_sendall(p.raw, flood); });
    for (int i = 0; i < 20; ++i) fiberloop::sleep(0);
    BOOST_TEST(intact());
    BOOST_TEST(p.reader.buffered() == 7u);  // nothing was read in meanwhile
    BOOST_TEST(!p.reader.at_eof());

    // Writes on the writer, and the peer reading them.
    p.writer.write("reply\n");
    p.writer.drain();
    std::string reply;
    while (reply.size() < 6) reply += net::sock_recv(p.raw, 100);
    BOOST_TEST(reply == "reply\n");
    BOOST_TEST(intact());

    // Another connection's reads: through its buffer, the thread's receive
    // scratch (a large read() of an empty buffer) and its own views.
    const std::string bulk = pattern_string(0, 10000);
    net::sock_sendall(q.raw, bulk + "\nq line\nq tail");
    std::string got = q.reader.read(8192);
    BOOST_TEST(!got.empty());
    BOOST_TEST((got == bulk.substr(0, got.size())));
    BOOST_TEST(intact());
    BOOST_TEST(q.reader.readexactly(bulk.size() - got.size() + 1) ==
               bulk.substr(got.size()) + "\n");
    BOOST_TEST(q.reader.readline_view() == "q line\n");
    char qbuf[16];
    BOOST_TEST(q.reader.read_into(qbuf, sizeof qbuf) == 6u);
    BOOST_TEST(intact());

    // Copies of the reader and the writer come and go; their non-read calls.
    {
      StreamReader r2 = p.reader;
      StreamWriter w2 = p.writer;
      BOOST_TEST(r2.buffered() == 7u);
      BOOST_TEST(r2.limit() == 64u * 1024);
      BOOST_TEST(!w2.is_closing());
      BOOST_TEST(w2.write_buffer_size() == 0u);
    }
    BOOST_TEST(intact());

    // The next read call returns what follows, and the flood after it.
    BOOST_TEST(p.reader.readline_view() == "second\n");
    std::string rest;
    while (rest.size() < flood.size()) {
      std::string_view v = p.reader.read_view(flood.size() - rest.size());
      BOOST_REQUIRE(!v.empty());
      rest += v;
    }
    BOOST_TEST((rest == flood));
    fiberloop::await(flooder);
  });
}

BOOST_AUTO_TEST_CASE(a_view_outlives_the_writer_closing_and_the_other_copies) {
  // Valid "until the next read call ... or until the last copy of the reader
  // and the writer is gone": closing is neither.
  run([] {
    for (bool abort : {false, true}) {
      BOOST_TEST_CONTEXT((abort ? "abort" : "close")) {
        StreamPair p = stream_pair();
        net::sock_sendall(p.raw, "kept line\nbuffered\n");
        StreamReader keeper = p.reader;
        std::string_view view = keeper.readline_view();
        BOOST_REQUIRE(view == "kept line\n");
        if (abort) {
          p.writer.abort();
        } else {
          p.writer.close();
        }
        p.writer.wait_closed();
        BOOST_TEST(view == "kept line\n");
        p.reader = StreamReader();  // the other copies go; `keeper` stays
        p.writer = StreamWriter();
        fiberloop::sleep(0);
        BOOST_TEST(view == "kept line\n");
        // What was buffered still reads, then the end (closed by this side).
        BOOST_TEST(keeper.readline_view() == "buffered\n");
        BOOST_TEST(keeper.readline_view() == "");
        BOOST_TEST(keeper.at_eof());
      }
    }
  });
}

BOOST_AUTO_TEST_CASE(several_views_of_one_burst_are_each_valid_until_the_next_call) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "alpha\nbeta\r\ngamma|0123456789rest");
    auto check_then_yield = [](std::string_view v, std::string_view want) {
      fiberloop::sleep(0);
      return v == want;
    };
    std::string_view a = p.reader.readline_view();
    BOOST_TEST(check_then_yield(a, "alpha\n"));
    std::string_view b = p.reader.readuntil_view("\r\n");
    BOOST_TEST(check_then_yield(b, "beta\r\n"));
    std::string_view c = p.reader.readuntil_view("|");
    BOOST_TEST(check_then_yield(c, "gamma|"));
    std::string_view d = p.reader.readexactly_view(10);
    BOOST_TEST(check_then_yield(d, "0123456789"));
    std::string_view e = p.reader.read_view();
    BOOST_TEST(check_then_yield(e, "rest"));
    BOOST_TEST(p.reader.buffered() == 0u);
    BOOST_TEST(e == "rest");
    // The bytes handed out were each the next ones: none twice, none skipped.
    BOOST_TEST(a.size() + b.size() + c.size() + d.size() + e.size() == 32u);
  });
}

namespace {

// Mix reads `data` from a peer task through a random mix of every read
// call, each result checked against what the stream must give at that
// point (a model of the documented errors: refused lines are gone, refused
// readuntil / readexactly_view bytes stay), and each view checked again
// before the next call, after the loop ran (and the peer sent) meanwhile.
struct Mix {
  Mix(unsigned seed, const std::string& d, std::size_t l) : rng(seed), data(d), limit(l) {}
  std::mt19937 rng;
  const std::string& data;
  std::size_t limit;
  std::size_t pos = 0;   // the next byte the stream must give
  std::string kept;      // every byte handed out, in order
  std::string expected;  // the bytes the model says are handed out
  std::size_t errors = 0, views = 0, calls = 0;
  std::vector<char> buf = std::vector<char>(128 * 1024);

  std::size_t pick(std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
  }
  // amount(big) is a read size: mostly small, one in forty up to big.
  std::size_t amount(std::size_t big) { return pick(0, 39) == 0 ? pick(1, big) : pick(1, 300); }
  // line_end() is the length of the line at pos through its newline (or the
  // rest of the stream), and whether it has one.
  std::size_t line_end(bool& terminated) const {
    std::size_t nl = data.find('\n', pos);
    terminated = nl != std::string::npos;
    return (terminated ? nl + 1 : data.size()) - pos;
  }
  bool give(std::string_view got, std::size_t want) {
    expected.append(data, pos, want);
    kept.append(got);
    bool ok = got.size() == want && got == std::string_view(data).substr(pos, want);
    pos += want;
    return ok;
  }

  // step() makes one call; false once the stream is done or on a mismatch.
  bool step(StreamReader& r) {
    ++calls;
    const std::size_t left = data.size() - pos;
    bool terminated;
    const std::size_t line = line_end(terminated);
    const std::size_t body = terminated ? line - 1 : line;  // before the newline
    std::string_view view;
    bool is_view = false, ok = true;
    switch (pick(0, 10)) {
      case 0: {  // read_view(n)
        std::size_t n = amount(70000);
        view = r.read_view(n);
        is_view = true;
        ok = left == 0 ? view.empty() : !view.empty() && view.size() <= n && give(view, view.size());
        break;
      }
      case 1:
      case 2: {  // readline_view()
        bool refused = body > limit;
        try {
          view = r.readline_view();
          is_view = true;
          ok = !refused && give(view, line);
        } catch (const LimitOverrunError&) {
          ok = refused;
          pos += line;  // the whole line is gone
          ++errors;
        }
        break;
      }
      case 3: {  // readuntil_view("\n")
        bool refused = body > limit;
        try {
          view = r.readuntil_view("\n");
          is_view = true;
          ok = !refused && terminated && give(view, line);
        } catch (const LimitOverrunError&) {
          ok = refused;  // the bytes stay
          ++errors;
        } catch (const IncompleteReadError& e) {
          ok = !refused && !terminated && give(e.partial, left);
          ++errors;
        }
        break;
      }
      case 4: {  // readexactly_view(n), sometimes past the limit
        std::size_t n = pick(0, 20) == 0 ? limit + pick(1, 100) : amount(std::min<std::size_t>(limit, 30000));
        try {
          view = r.readexactly_view(n);
          is_view = true;
          ok = n <= limit && n <= left && give(view, n);
        } catch (const LimitOverrunError& e) {
          ok = n > limit && e.consumed == 0;  // nothing read
          ++errors;
        } catch (const IncompleteReadError& e) {
          ok = n <= limit && n > left && e.expected == n && give(e.partial, left);
          ++errors;
        }
        break;
      }
      case 5: {  // readline_into(buf, len)
        std::size_t len = pick(0, 3) == 0 ? pick(1, 200) : pick(1, buf.size());
        bool refused = line > len || body > limit;
        try {
          std::size_t n = r.readline_into(buf.data(), len);
          ok = !refused && give(std::string_view(buf.data(), n), line);
        } catch (const LimitOverrunError&) {
          ok = refused;
          pos += line;
          ++errors;
        }
        break;
      }
      case 6: {  // readline()
        bool refused = body > limit;
        try {
          std::string s = r.readline();
          ok = !refused && give(s, line);
        } catch (const LimitOverrunError&) {
          ok = refused;
          pos += line;
          ++errors;
        }
        break;
      }
      case 7: {  // read(n): also the straight-to-the-result path
        std::string s = r.read(static_cast<std::ptrdiff_t>(amount(300000)));
        ok = left == 0 ? s.empty() : !s.empty() && give(s, s.size());
        break;
      }
      case 8: {  // read_into(buf, n)
        std::size_t n = r.read_into(buf.data(), amount(buf.size()));
        ok = left == 0 ? n == 0 : n > 0 && give(std::string_view(buf.data(), n), n);
        break;
      }
      case 9: {  // readexactly(n)
        std::size_t n = amount(100000);
        try {
          std::string s = r.readexactly(n);
          ok = n <= left && give(s, n);
        } catch (const IncompleteReadError& e) {
          ok = n > left && give(e.partial, left);
          ++errors;
        }
        break;
      }
      default: {  // buffered(): never more than what is left
        ok = r.buffered() <= left;
        break;
      }
    }
    BOOST_TEST(ok, "call " << calls << " at offset " << pos << " of " << data.size());
    if (!ok) return false;
    if (is_view && !view.empty()) {
      // The view outlives the loop running, the peer sending, buffered().
      ++views;
      const std::size_t at = pos - view.size();
      const std::size_t yields = pick(0, 3);
      for (std::size_t i = 0; i < yields; ++i) fiberloop::sleep(0);
      (void)r.buffered();
      (void)r.at_eof();
      bool same = view == std::string_view(data).substr(at, view.size());
      BOOST_TEST(same, "a view of offset " << at << " changed before the next call");
      if (!same) return false;
    }
    return pos < data.size() || !r.at_eof();
  }
};

// random_lines(rng, total, ...) is at least `total` bytes of lines of random
// bytes (any but '\n': NULs, '\r', 0xff) and random lengths, the last one
// without its newline.
std::string random_lines(std::mt19937& rng, std::size_t total, std::size_t short_max,
                         std::size_t medium_max, std::size_t long_max) {
  std::string s;
  s.reserve(total + long_max + 1);
  auto pick = [&](std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
  };
  while (s.size() < total) {
    std::size_t kind = pick(0, 199);
    std::size_t len = kind < 190   ? pick(0, short_max)
                      : kind < 199 ? pick(0, medium_max)
                                   : pick(0, long_max);
    for (std::size_t i = 0; i < len; ++i) {
      char ch = static_cast<char>(pick(0, 255));
      s += ch == '\n' ? '\0' : ch;
    }
    s += '\n';
  }
  s.pop_back();  // an unterminated last line
  return s;
}

// mixed_transfer(...) sends data from a peer task in random pieces and
// reads it back through a Mix.
void mixed_transfer(const std::string& data, net::StreamOptions options, unsigned seed) {
  StreamPair p = stream_pair(options);
  auto sender = fiberloop::spawn([&p, &data, seed] {
    std::mt19937 srng(seed + 1);
    try {
      for (std::size_t off = 0; off < data.size();) {
        std::size_t n = std::uniform_int_distribution<std::size_t>(1, 100000)(srng);
        n = std::min(n, data.size() - off);
        net::sock_sendall(p.raw, std::string_view(data).substr(off, n));
        off += n;
        if (srng() % 4 == 0) fiberloop::sleep(0);
      }
      p.raw.shutdown(SHUT_WR);
    } catch (const std::system_error&) {
      // The reader gave up (a failed check) and aborted the connection.
    }
  });
  Mix mix(seed, data, options.limit);
  while (mix.step(p.reader)) {
  }
  if (mix.pos < data.size()) p.writer.abort();  // a failure: let the sender go
  fiberloop::await(sender);
  BOOST_TEST(mix.pos == data.size());
  BOOST_TEST(p.reader.at_eof());
  BOOST_TEST(mix.kept.size() == mix.expected.size());
  BOOST_TEST((mix.kept == mix.expected), "the bytes handed out differ from the stream's");
  BOOST_TEST(mix.views > 100u);
  BOOST_TEST(mix.errors > 10u);
  BOOST_TEST_MESSAGE("seed " << seed << ": " << mix.calls << " calls, " << mix.views
                             << " views, " << mix.errors << " errors");
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_random_mix_of_views_strings_and_read_into_over_4_mib_keeps_byte_order) {
  run(
      [] {
        const unsigned seed = 20261202;
        std::mt19937 rng(seed);
        // Lines mostly short, some of several buffers, a few past the 64 KiB limit.
        const std::string data = random_lines(rng, 4u << 20, 300, 20000, 100000);
        mixed_transfer(data, {}, seed);
      },
      240.0);
}

BOOST_AUTO_TEST_CASE(a_random_mix_with_a_small_limit_keeps_byte_order_through_its_errors) {
  // Lines around a 64-byte limit: many refusals of every kind.
  run(
      [] {
        for (unsigned seed : {1u, 2u, 3u}) {
          BOOST_TEST_CONTEXT("seed " << seed) {
            std::mt19937 rng(seed);
            const std::string data = random_lines(rng, 256u << 10, 70, 150, 3000);
            mixed_transfer(data, {.limit = 64}, seed);
          }
        }
        BOOST_TEST(still_serving());
      },
      120.0);
}

// ---- one reader at a time ----

BOOST_AUTO_TEST_CASE(a_second_task_reading_while_one_waits_in_readline_view_is_refused) {
  struct Call {
    const char* name;
    std::function<void(StreamReader&)> call;
  };
  const std::vector<Call> refused = {
      {"readline_view", [](StreamReader& r) { (void)r.readline_view(); }},
      {"read_view", [](StreamReader& r) { (void)r.read_view(); }},
      {"readuntil_view", [](StreamReader& r) { (void)r.readuntil_view("|"); }},
      {"readexactly_view", [](StreamReader& r) { (void)r.readexactly_view(4); }},
      // Over the limit, but a second reader first.
      {"readexactly_view", [](StreamReader& r) { (void)r.readexactly_view(1u << 30); }},
      {"readline_into",
       [](StreamReader& r) {
         char buf[16];
         r.readline_into(buf, sizeof buf);
       }},
      {"readline", [](StreamReader& r) { r.readline(); }},
      {"read_into",
       [](StreamReader& r) {
         char buf[16];
         r.read_into(buf, sizeof buf);
       }},
  };
  run([&] {
    StreamPair p = stream_pair();
    int round = 0;
    for (const Call& c : refused) {
      BOOST_TEST_CONTEXT(c.name << " (round " << round << ")") {
        const std::string part = "part " + std::to_string(round++);
        net::sock_sendall(p.raw, part);
        auto first = fiberloop::spawn([&] { return p.reader.readline_view(); });
        // It took the part in and waits for the rest of the line.
        BOOST_REQUIRE(eventually([&] { return p.reader.buffered() == part.size(); }));
        BOOST_REQUIRE(!first.done());
        const std::string expected = std::string("StreamReader::") + c.name +
                                     "() called while another task is already waiting for "
                                     "incoming data";
        BOOST_CHECK_EXCEPTION(c.call(p.reader), RuntimeError, [&](const RuntimeError& e) {
          BOOST_TEST(e.what() == expected);
          return true;
        });
        BOOST_TEST(p.reader.buffered() == part.size());  // the waiting reader's data, untouched
        net::sock_sendall(p.raw, " end\n");
        BOOST_TEST(fiberloop::await(first) == part + " end\n");
      }
    }
    // A copy of the reader is the same stream: refused too.
    auto first = waiting_task([&] { return p.reader.readline_view(); });
    StreamReader copy = p.reader;
    BOOST_CHECK_THROW((void)copy.readline_view(), RuntimeError);
    net::sock_sendall(p.raw, "mine\n");
    BOOST_TEST(fiberloop::await(first) == "mine\n");
    // One reader at a time is fine again.
    net::sock_sendall(p.raw, "free\n");
    BOOST_TEST(copy.readline_view() == "free\n");
    BOOST_TEST(still_serving());
  });
}

BOOST_AUTO_TEST_CASE(each_waiting_view_call_keeps_its_data_when_a_second_reader_is_refused) {
  char line_buf[32];
  const std::vector<ViewCall> waiting = {
      {"readline_view", [](StreamReader& r) { return std::string(r.readline_view()); }},
      {"readuntil_view", [](StreamReader& r) { return std::string(r.readuntil_view("\n")); }},
      {"readexactly_view", [](StreamReader& r) { return std::string(r.readexactly_view(9)); }},
      {"readline_into",
       [&](StreamReader& r) {
         std::size_t n = r.readline_into(line_buf, sizeof line_buf);
         return std::string(line_buf, n);
       }},
  };
  run([&] {
    StreamPair p = stream_pair();
    for (const ViewCall& w : waiting) {
      BOOST_TEST_CONTEXT(w.name) {
        net::sock_sendall(p.raw, "part");
        auto first = fiberloop::spawn([&] { return w.call(p.reader); });
        BOOST_REQUIRE(eventually([&] { return p.reader.buffered() == 4u; }));
        BOOST_REQUIRE(!first.done());
        BOOST_CHECK_EXCEPTION((void)p.reader.readline_view(), RuntimeError,
                              [](const RuntimeError& e) {
                                return std::string(e.what()).find(
                                           "StreamReader::readline_view() called while") == 0;
                              });
        BOOST_TEST(p.reader.buffered() == 4u);
        net::sock_sendall(p.raw, " end\n");  // "part end\n": 9 bytes
        BOOST_TEST(fiberloop::await(first) == "part end\n");
      }
    }
    // read_view() waits only with nothing buffered.
    auto first = waiting_task([&] { return p.reader.read_view(); });
    BOOST_CHECK_THROW((void)p.reader.readline_view(), RuntimeError);
    net::sock_sendall(p.raw, "x");
    BOOST_TEST(fiberloop::await(first) == "x");
  });
}

BOOST_AUTO_TEST_CASE(a_cancelled_wait_in_readline_view_leaves_the_partial_line_readable) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "half");
    auto waiting = fiberloop::spawn([&] { return p.reader.readline_view(); });
    BOOST_REQUIRE(eventually([&] { return p.reader.buffered() == 4u; }));
    waiting.cancel();
    BOOST_CHECK_THROW(fiberloop::await(waiting), fiberloop::CancelledError);
    net::sock_sendall(p.raw, " a line\n");
    BOOST_TEST(p.reader.readline_view() == "half a line\n");  // no longer "reading"
  });
}

// ---- errors leave the stream and the loop working ----

BOOST_AUTO_TEST_CASE(after_every_kind_of_error_the_stream_reads_on) {
  run([] {
    StreamPair p = stream_pair({.limit = 32});
    char buf[64];
    auto send = [&](const std::string& s) { net::sock_sendall(p.raw, s); };

    send(std::string(40, 'x') + "\nline 1\n");
    BOOST_CHECK_THROW(p.reader.readline_view(), LimitOverrunError);
    BOOST_TEST(p.reader.readline_view() == "line 1\n");

    send(std::string(40, 'y') + "|line 2\n");
    BOOST_CHECK_THROW(p.reader.readuntil_view("|"), LimitOverrunError);
    BOOST_TEST(p.reader.readexactly_view(32) == std::string(32, 'y'));
    BOOST_TEST(p.reader.readuntil_view("|") == std::string(8, 'y') + "|");
    BOOST_TEST(p.reader.readline_view() == "line 2\n");

    send(std::string(33, 'z') + "line 3\n");
    BOOST_CHECK_THROW(p.reader.readexactly_view(33), LimitOverrunError);
    BOOST_TEST(p.reader.readexactly(33) == std::string(33, 'z'));
    BOOST_TEST(p.reader.readline_view() == "line 3\n");

    send("does not fit\nline 4\n");
    BOOST_CHECK_THROW(p.reader.readline_into(buf, 8), LimitOverrunError);
    BOOST_TEST(p.reader.readline_into(buf, 8) == 7u);
    BOOST_TEST(std::string_view(buf, 7) == "line 4\n");

    send("line 5\n");
    BOOST_CHECK_THROW(p.reader.readline_into(buf, 0), std::invalid_argument);
    BOOST_CHECK_THROW(p.reader.readuntil_view(""), std::invalid_argument);
    BOOST_TEST(p.reader.readline_view() == "line 5\n");

    auto waiting = waiting_task([&] { return p.reader.readline_view(); });
    BOOST_CHECK_THROW(p.reader.read_view(), RuntimeError);
    send("line 6\n");
    BOOST_TEST(fiberloop::await(waiting) == "line 6\n");

    send("end");
    p.raw.shutdown(SHUT_WR);
    BOOST_CHECK_THROW(p.reader.readexactly_view(10), IncompleteReadError);
    BOOST_TEST(p.reader.at_eof());
    BOOST_CHECK_THROW(p.reader.readuntil_view("\n"), IncompleteReadError);
    BOOST_TEST(p.reader.read_view() == "");
    BOOST_TEST(p.reader.readline_view() == "");
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 0u);

    // A reset peer: the view calls report it, and the loop serves on.
    StreamPair r = stream_pair();
    reset_on_close(r.raw.fd());
    r.raw.close();
    BOOST_CHECK_EXCEPTION(r.reader.readline_view(), std::system_error, [](const std::system_error& e) {
      return e.code().value() == ECONNRESET;
    });
    BOOST_TEST(still_serving());
  });
}

// ---- the lifetime rule, as the sanitizer build checks it ----
//
// Sanitizer builds move the buffer at every read call that follows a view,
// so a view used after it reads freed memory. Only ASan can see that: in
// other builds the bytes may well still be there, and these cases are not
// compiled.
#if defined(__SANITIZE_ADDRESS__)
namespace {

// use_view_in_child(take, next) forks a child that takes a view, runs
// `next` (if any), then reads every byte of the view.
Death use_view_in_child(const std::function<std::string_view(StreamReader&)>& take,
                        const std::function<void(StreamPair&)>& next) {
  return die_in_child([&] {
    fiberloop::run([&] {
      StreamPair p = stream_pair({.limit = 64});
      net::sock_sendall(p.raw, "first line|\nsecond line\nthird\n");
      std::string_view view = take(p.reader);
      if (view.empty()) ::_exit(3);
      if (next) next(p);
      volatile char sink = 0;
      for (char ch : view) sink = static_cast<char>(sink + ch);  // reads the view's bytes
    });
  });
}

const std::vector<std::pair<const char*, std::function<std::string_view(StreamReader&)>>>
    kTakes = {
        {"readline_view", [](StreamReader& r) { return r.readline_view(); }},
        {"read_view", [](StreamReader& r) { return r.read_view(5); }},
        {"readuntil_view", [](StreamReader& r) { return r.readuntil_view("|"); }},
        {"readexactly_view", [](StreamReader& r) { return r.readexactly_view(6); }},
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_view_used_after_the_next_read_call_is_a_heap_use_after_free) {
  const std::vector<std::pair<const char*, std::function<void(StreamPair&)>>> nexts = {
      {"readline()", [](StreamPair& p) { p.reader.readline(); }},
      {"read_into()",
       [](StreamPair& p) {
         char b[4];
         p.reader.read_into(b, sizeof b);
       }},
      {"readline_view() on a copy",
       [](StreamPair& p) {
         StreamReader copy = p.reader;
         (void)copy.readline_view();
       }},
      {"readexactly_view() that throws",
       [](StreamPair& p) {
         try {
           (void)p.reader.readexactly_view(65);  // over the limit
         } catch (const LimitOverrunError&) {
         }
       }},
      {"readline_into()",
       [](StreamPair& p) {
         char b[64];
         p.reader.readline_into(b, sizeof b);
       }},
      {"readexactly(1)", [](StreamPair& p) { p.reader.readexactly(1); }},
  };
  std::size_t i = 0;
  for (const auto& [take_name, take] : kTakes) {
    for (std::size_t k = 0; k < 2; ++k, ++i) {
      const auto& [next_name, next] = nexts[i % nexts.size()];
      BOOST_TEST_CONTEXT(take_name << " then " << next_name) {
        Death d = use_view_in_child(take, next);
        BOOST_TEST((d.signal != 0 || d.exit_status != 0), "the child lived on");
        BOOST_TEST(d.exit_status != 3);
        BOOST_TEST(d.stderr_text.find("heap-use-after-free") != std::string::npos,
                   d.stderr_text.substr(0, 3000));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(a_view_used_before_the_next_read_call_is_clean_under_asan) {
  // The control: everything but a read call, then the view's bytes. The
  // child exits normally, with nothing on stderr.
  for (const auto& [take_name, take] : kTakes) {
    BOOST_TEST_CONTEXT(take_name) {
      Death d = use_view_in_child(take, [](StreamPair& p) {
        fiberloop::sleep(0);
        net::sock_sendall(p.raw, std::string(32 * 1024, 'm'));  // the peer sends on
        fiberloop::sleep(0);
        p.writer.write("reply\n");
        p.writer.drain();
        (void)p.reader.buffered();
        (void)p.reader.at_eof();
        StreamPair q = stream_pair();
        net::sock_sendall(q.raw, "other\n");
        (void)q.reader.readline_view();
      });
      BOOST_TEST(d.signal == 0);
      BOOST_TEST(d.exit_status == 0);
      BOOST_TEST(d.stderr_text.empty(), d.stderr_text.substr(0, 3000));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_view_used_after_a_read_call_that_returns_at_once_is_reported) {
  // Calls that return before reading anything (a zero length, an empty
  // separator) are read calls too: they end the view's validity.
  const std::vector<std::pair<const char*, std::function<void(StreamPair&)>>> nexts = {
      {"read(0)", [](StreamPair& p) { p.reader.read(0); }},
      {"read_view(0)", [](StreamPair& p) { (void)p.reader.read_view(0); }},
      {"readexactly_view(0)", [](StreamPair& p) { (void)p.reader.readexactly_view(0); }},
      {"readuntil_view(\"\")",
       [](StreamPair& p) {
         try {
           (void)p.reader.readuntil_view("");
         } catch (const std::invalid_argument&) {
         }
       }},
  };
  for (const auto& [next_name, next] : nexts) {
    BOOST_TEST_CONTEXT(next_name) {
      Death d = use_view_in_child(kTakes[0].second, next);
      BOOST_TEST(d.stderr_text.find("heap-use-after-free") != std::string::npos,
                 d.stderr_text.substr(0, 3000));
    }
  }
}
#endif

BOOST_AUTO_TEST_CASE(readline_into_at_the_end_of_a_stream_that_never_filled_its_buffer) {
  run([] {
    StreamPair p = stream_pair();
    p.raw.close();
    char buf[16];
    BOOST_TEST(p.reader.read_into(buf, sizeof buf) == 0u);  // the end, seen past the buffer
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 0u);
  });
}

BOOST_AUTO_TEST_CASE(readline_into_takes_an_unterminated_last_line_of_exactly_len_bytes) {
  run([] {
    StreamPair p = stream_pair();
    net::sock_sendall(p.raw, "abcde");
    p.raw.shutdown(SHUT_WR);
    char buf[5];
    std::size_t n = 0;
    BOOST_CHECK_NO_THROW(n = p.reader.readline_into(buf, sizeof buf));
    BOOST_TEST(std::string_view(buf, n) == "abcde");
    BOOST_TEST(p.reader.readline_into(buf, sizeof buf) == 0u);
  });
}

BOOST_AUTO_TEST_SUITE_END()
