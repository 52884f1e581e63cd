// The loop's fd table (detail/io_table.hpp) and how it stays in step with
// epoll: reused fd numbers, huge fd numbers, files closed while a dup keeps
// them registered (issue 6, items 3-5).
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <fiberloop/detail/io_table.hpp>
#include <string>
#include <system_error>
#include <utility>

#include "fd_helpers.hpp"
#include "loop_fixture.hpp"
#include "net_helpers.hpp"

namespace {

void put(int fd, const char* s) {
  BOOST_REQUIRE(::write(fd, s, std::char_traits<char>::length(s)) > 0);
}

struct TableFixture : LoopFixture {
  void spin() {
    loop.call_soon([] {});
    loop.run_once();
  }
  // iterations_for(seconds) counts the loop's iterations until a timer
  // `seconds` away fires: an idle loop makes a handful, a spinning one
  // thousands.
  int iterations_for(double seconds) {
    bool fired = false;
    loop.call_later(seconds, [&] { fired = true; });
    int n = 0;
    while (!fired && n < 1'000'000) {
      loop.run_once();
      ++n;
    }
    return n;
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(io_table, TableFixture)

BOOST_AUTO_TEST_CASE(table_keeps_huge_fds_out_of_the_dense_part) {
  fiberloop::detail::IoTable table;
  table.insert(3).registered = 1;
  BOOST_TEST(table.dense_capacity() >= 4u);
  BOOST_TEST(table.dense_capacity() <= 64u);
  table.insert(100'000'000).registered = 2;
  table.insert(INT_MAX).registered = 3;
  BOOST_TEST(table.dense_capacity() <= 64u);
  BOOST_TEST(table.size() == 3u);
  BOOST_REQUIRE(table.find(100'000'000));
  BOOST_TEST(table.find(100'000'000)->registered == 2u);
  BOOST_TEST(table.find(INT_MAX)->registered == 3u);
  BOOST_TEST(!table.find(4));
  BOOST_TEST(!table.find(-1));
  table.insert(60'000);
  BOOST_TEST(table.dense_capacity() <= static_cast<std::size_t>(table.kDenseLimit));
  table.erase(100'000'000);
  table.erase(3);
  table.erase(3);  // twice: no-op
  BOOST_TEST(table.size() == 2u);
  BOOST_TEST(!table.find(100'000'000));
  BOOST_TEST(!table.find(3));
}

// A Socket's IoRegistration points into the table: an entry must not move
// when other numbers arrive, and a registration must see its entry erased
// or re-made under another tag.
BOOST_AUTO_TEST_CASE(entries_stay_put_and_a_registration_sees_them_go) {
  fiberloop::detail::IoTable table;
  fiberloop::detail::IoEntry& first = table.insert(5);
  first.tag = 7;
  fiberloop::detail::IoRegistration reg{&first, 7};
  for (int fd : {70, 700, 7'000, 65'535, 65'536, 1'000'000}) table.insert(fd);
  BOOST_TEST(table.find(5) == &first);
  BOOST_TEST(reg.get() == &first);
  table.erase(5);
  BOOST_TEST(!reg.get());
  fiberloop::detail::IoEntry& again = table.insert(5);
  BOOST_TEST(&again == &first);  // the same place, reused
  again.tag = 8;
  BOOST_TEST(!reg.get());  // a new registration under the number is not the old one
  fiberloop::detail::IoEntry& huge = table.insert(2'000'000);
  fiberloop::detail::IoRegistration huge_reg{&huge, huge.tag};
  table.erase(2'000'000);
  BOOST_TEST(!huge_reg.get());  // the node stays, emptied
  BOOST_TEST(table.size() == 7u);
}

BOOST_AUTO_TEST_CASE(add_reader_on_a_reused_number_closed_without_remove_is_armed) {
  Pair first = make_pipe();
  int number = first.r.get();
  loop.add_reader(number, [] {});
  first.r.reset();  // no remove_reader: the loop still lists the number
  first.w.reset();
  Pair second = make_pipe();
  BOOST_TEST_REQUIRE(second.r.get() == number);
  int calls = 0;
  loop.add_reader(second.r.get(), [&] {
    ++calls;
    char c;
    BOOST_TEST(::read(second.r.get(), &c, 1) == 1);
  });
  put(second.w.get(), "x");
  spin();
  BOOST_TEST(calls == 1);
  BOOST_TEST(loop.remove_reader(second.r.get()));
}

BOOST_AUTO_TEST_CASE(add_writer_on_a_reused_number_closed_without_remove_is_armed) {
  Pair first = make_pipe();
  int number = first.w.get();
  loop.add_writer(number, [] {});
  first.w.reset();
  first.r.reset();
  Pair second = make_pipe();
  BOOST_TEST_REQUIRE((second.r.get() == number || second.w.get() == number));
  int calls = 0;
  loop.add_writer(number, [&] { ++calls; });
  spin();
  BOOST_TEST(calls == 1);
  BOOST_TEST(loop.remove_writer(number));
}

BOOST_AUTO_TEST_CASE(huge_fd_numbers_are_refused_without_allocating) {
  long before = resident_kib();
  for (int fd : {100'000'000, 400'000'000, INT_MAX}) {
    BOOST_CHECK_EXCEPTION(loop.add_reader(fd, [] {}), std::system_error,
                          [](const std::system_error& e) { return e.code().value() == EBADF; });
    BOOST_CHECK_THROW(loop.add_writer(fd, [] {}), std::system_error);
    BOOST_TEST(!loop.remove_reader(fd));
  }
  long grown = resident_kib() - before;
  BOOST_TEST(grown < 8 * 1024, "RSS grew by " << grown << " KiB");
  // The loop still works.
  Pair p = make_pipe();
  int calls = 0;
  loop.add_reader(p.r.get(), [&] { ++calls; });
  put(p.w.get(), "x");
  spin();
  BOOST_TEST(calls == 1);
  BOOST_TEST(loop.remove_reader(p.r.get()));
}

BOOST_AUTO_TEST_CASE(a_large_real_fd_is_watched_through_the_sparse_part) {
  rlimit lim{};
  BOOST_REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
  constexpr rlim_t kWant = 200'001;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < kWant) {
    BOOST_TEST_MESSAGE("skipped: RLIMIT_NOFILE hard limit " << lim.rlim_max << " < " << kWant);
    return;
  }
  rlimit raised = lim;
  raised.rlim_cur = kWant;
  BOOST_REQUIRE(::setrlimit(RLIMIT_NOFILE, &raised) == 0);
  struct Restore {
    rlimit lim;
    ~Restore() { ::setrlimit(RLIMIT_NOFILE, &lim); }
  } restore{lim};
  Pair p = make_pipe();
  Fd high(::dup3(p.r.get(), 200'000, O_CLOEXEC));
  BOOST_REQUIRE(high.get() == 200'000);
  long before = resident_kib();
  int calls = 0;
  loop.add_reader(high.get(), [&] {
    ++calls;
    char c;
    BOOST_TEST(::read(high.get(), &c, 1) == 1);
  });
  BOOST_TEST(resident_kib() - before < 4 * 1024);
  put(p.w.get(), "x");
  spin();
  BOOST_TEST(calls == 1);
  BOOST_TEST(loop.remove_reader(high.get()));
}

BOOST_AUTO_TEST_CASE(fd_closed_while_a_dup_keeps_it_registered_does_not_spin_the_loop) {
  Pair p = make_pipe();
  Fd dup(::fcntl(p.r.get(), F_DUPFD_CLOEXEC, 0));
  BOOST_REQUIRE(dup.get() >= 0);
  int number = p.r.get();
  int calls = 0;
  loop.add_reader(number, [&] { ++calls; });
  put(p.w.get(), "x");  // readable for good: nobody reads it
  p.r.reset();          // closed without remove_reader; the dup keeps the file registered
  spin();
  BOOST_TEST(calls == 1);  // as asyncio: the reader is still listed, so it runs
  BOOST_TEST(loop.remove_reader(number));
  // The registration cannot be deleted by number any more; the loop must
  // not busy-loop on it (asyncio and the landed loop spin at 100% CPU).
  int iterations = iterations_for(0.05);
  BOOST_TEST(iterations < 20, iterations << " iterations in 50 ms");
  BOOST_TEST(calls == 1);
  // And it keeps working.
  Pair q = make_pipe();
  int other = 0;
  loop.add_reader(q.r.get(), [&] { ++other; });
  put(q.w.get(), "y");
  spin();
  BOOST_TEST(other == 1);
  BOOST_TEST(loop.remove_reader(q.r.get()));
}

BOOST_AUTO_TEST_CASE(debug_mode_names_the_fd_of_an_orphaned_registration_once) {
  expected_reports = 1;
  loop.set_debug(true);
  Pair p = make_pipe();
  Fd dup(::fcntl(p.r.get(), F_DUPFD_CLOEXEC, 0));
  int number = p.r.get();
  loop.add_reader(number, [] {});
  put(p.w.get(), "x");
  p.r.reset();
  BOOST_TEST(loop.remove_reader(number));
  iterations_for(0.02);
  iterations_for(0.02);
  BOOST_REQUIRE(reports.size() == 1u);
  BOOST_TEST(reports[0].find("fd " + std::to_string(number)) != std::string::npos, reports[0]);
  BOOST_TEST(reports[0].find("before closing") != std::string::npos, reports[0]);
}

BOOST_AUTO_TEST_CASE(orphaned_events_do_not_reach_the_new_file_under_the_same_number) {
  Pair old = make_pipe();
  Fd dup(::fcntl(old.r.get(), F_DUPFD_CLOEXEC, 0));
  int number = old.r.get();
  loop.add_reader(number, [] {});
  old.r.reset();  // still registered through the dup, under `number`
  Pair fresh = make_pipe();
  BOOST_TEST_REQUIRE(fresh.r.get() == number);
  int calls = 0;
  loop.add_reader(number, [&] {
    ++calls;
    char c;
    BOOST_TEST(::read(number, &c, 1) == 1);
  });
  put(old.w.get(), "o");  // the old file becomes readable: not the new one's business
  spin();
  spin();
  BOOST_TEST(calls == 0);
  BOOST_TEST(iterations_for(0.03) < 20);
  put(fresh.w.get(), "n");
  spin();
  BOOST_TEST(calls == 1);
  BOOST_TEST(loop.remove_reader(number));
}

BOOST_AUTO_TEST_SUITE_END()
