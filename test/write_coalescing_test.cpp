// StreamWriter::write() coalesces: the bytes reach the kernel in one send
// when the writing task next waits, yields or ends (or past the high-water
// mark), never later — so request/response code cannot deadlock, and the
// order with close(), write_eof() and drain() is kept.
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <fiberloop/detail/syscall_counts.hpp>
#include <string>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"

namespace fl = fiberloop;

namespace {

// A stream over one end of a unix socketpair; `peer` is the raw other end,
// read without the loop (MSG_DONTWAIT) to see exactly what the kernel got.
struct Wired {
  net::StreamReader reader;
  net::StreamWriter writer;
  int peer;
};

Wired wired(net::StreamOptions options = {}) {
  int sv[2];
  BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  auto [r, w] = net::open_streams(net::Socket::adopt(sv[0]), options);
  return {r, w, sv[1]};
}

// received(fd) is everything the kernel holds for fd now ("" if nothing).
std::string received(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// at_eof(fd): the other end shut down writing, and nothing is left.
bool at_eof(int fd) {
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

std::uint64_t sends() { return fl::detail::syscall_counts().writes; }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(write_coalescing, LoopFixture)

BOOST_AUTO_TEST_CASE(replies_written_one_by_one_go_in_one_send_at_the_next_wait) {
  Wired s = wired();
  run([&] {
    std::uint64_t before = sends();
    for (int i = 0; i < 16; ++i) s.writer.write("+OK\r\n");
    BOOST_TEST(sends() == before);  // nothing yet: the task has not waited
    BOOST_TEST(received(s.peer).empty());
    fl::sleep(0);
    BOOST_TEST(sends() == before + 1);
    std::string all;
    for (int i = 0; i < 16; ++i) all += "+OK\r\n";
    BOOST_TEST(received(s.peer) == all);
  });
  ::close(s.peer);
}

BOOST_AUTO_TEST_CASE(any_wait_flushes_first_so_request_and_response_cannot_deadlock) {
  Wired s = wired();
  run([&] {
    // The "server" answers only once it has the request: if the request
    // stayed in our buffer while we wait for the answer, both would wait.
    auto server = fl::spawn([&] {
      fl::wait_readable(s.peer);
      std::string request = received(s.peer);
      std::string answer = "got " + request;
      BOOST_REQUIRE(::send(s.peer, answer.data(), answer.size(), 0) ==
                    static_cast<ssize_t>(answer.size()));
    });
    s.writer.write("ping\n");
    BOOST_TEST(s.reader.readline() == "got ping\n");
    fl::await(server);
  });
  ::close(s.peer);
}

BOOST_AUTO_TEST_CASE(what_a_task_wrote_goes_when_it_ends) {
  Wired s = wired();
  run([&] {
    auto writer_task = fl::spawn([&] { s.writer.write("last words"); });
    fl::await(writer_task);
    BOOST_TEST(received(s.peer) == "last words");
  });
  ::close(s.peer);
}

BOOST_AUTO_TEST_CASE(dropping_the_writer_after_a_write_loses_nothing) {
  int peer = -1;
  run([&] {
    auto task = fl::spawn([&] {
      Wired s = wired();
      peer = s.peer;
      s.writer.write("sent after the handles are gone");
    });  // reader and writer destroyed inside the task, before it ends
    fl::await(task);
    BOOST_TEST(received(peer) == "sent after the handles are gone");
  });
  ::close(peer);
}

BOOST_AUTO_TEST_CASE(close_and_write_eof_come_after_the_coalesced_bytes) {
  Wired s = wired();
  Wired t = wired();
  run([&] {
    s.writer.write("before close");
    s.writer.close();
    t.writer.write("before eof");
    t.writer.write_eof();
    fl::sleep(0);
    BOOST_TEST(received(s.peer) == "before close");
    BOOST_TEST(at_eof(s.peer));
    BOOST_TEST(received(t.peer) == "before eof");
    BOOST_TEST(at_eof(t.peer));
  });
  ::close(s.peer);
  ::close(t.peer);
}

BOOST_AUTO_TEST_CASE(drain_sends_at_once) {
  Wired s = wired();
  run([&] {
    s.writer.write("drained");
    s.writer.drain();
    BOOST_TEST(received(s.peer) == "drained");
    BOOST_TEST(s.writer.write_buffer_size() == 0u);
  });
  ::close(s.peer);
}

BOOST_AUTO_TEST_CASE(past_the_high_water_mark_a_write_goes_at_once) {
  net::StreamOptions small;
  small.high_water = 1024;
  small.low_water = 256;
  Wired s = wired(small);
  run([&] {
    s.writer.write(std::string(100, 'a'));
    BOOST_TEST(received(s.peer).empty());
    s.writer.write(std::string(2000, 'b'));
    BOOST_TEST(received(s.peer) == std::string(100, 'a') + std::string(2000, 'b'));
  });
  ::close(s.peer);
}

BOOST_AUTO_TEST_CASE(a_write_outside_any_task_goes_at_once) {
  Wired s = wired();
  s.writer.write("from plain code");
  BOOST_TEST(received(s.peer) == "from plain code");
  loop.call_soon([&] { s.writer.write(" and a callback"); });
  loop.run_once();  // a callback is no task either: no wait of its own to wait for
  BOOST_TEST(received(s.peer) == " and a callback");
  ::close(s.peer);
}

BOOST_AUTO_TEST_CASE(the_budgets_yield_flushes_too) {
  Wired s = wired();
  std::string lines;
  for (int i = 0; i < 300; ++i) lines += "l\n";
  BOOST_REQUIRE(::send(s.peer, lines.data(), lines.size(), 0) ==
                static_cast<ssize_t>(lines.size()));
  run([&] {
    std::string seen_at_yield;
    auto watcher = fl::spawn([&] { seen_at_yield = received(s.peer); });
    // Writes and reads that never wait: the budget's yield lets the
    // watcher run, and the bytes must be in the kernel by then.
    for (int i = 0; i < 300; ++i) {
      s.writer.write("r");
      s.reader.readline();
    }
    fl::await(watcher);
    BOOST_TEST(!seen_at_yield.empty());
    BOOST_TEST(seen_at_yield.find_first_not_of('r') == std::string::npos);
  });
  ::close(s.peer);
}

BOOST_AUTO_TEST_CASE(a_reset_peer_is_reported_and_the_loop_keeps_working) {
  Wired s = wired();
  run([&] {
    ::close(s.peer);
    s.writer.write("into the void");
    fl::sleep(0);  // the coalesced send fails: the connection is lost
    BOOST_CHECK_THROW(s.writer.drain(), std::system_error);
    Wired t = wired();
    t.writer.write("still fine");
    fl::sleep(0);
    BOOST_TEST(received(t.peer) == "still fine");
    ::close(t.peer);
  });
}

BOOST_AUTO_TEST_SUITE_END()
