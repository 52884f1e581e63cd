// generator_test.cpp: Generator — Python generator semantics on a fiber.
#include <boost/test/unit_test.hpp>
#include <exception>
#include <fiberloop/generator.hpp>
#include <fiberloop/stack.hpp>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_helpers.hpp"

// Lets BOOST_TEST print the optionals send() returns when a check fails.
namespace boost::test_tools::tt_detail {
template <class T>
struct print_log_value<std::optional<T>> {
  void operator()(std::ostream& os, const std::optional<T>& v) {
    if (v) {
      os << *v;
    } else {
      os << "nullopt";
    }
  }
};
}  // namespace boost::test_tools::tt_detail

namespace {

using fiberloop::Generator;
using fiberloop::RuntimeError;
using Strings = std::vector<std::string>;

// Every test must give back each stack it took, whatever way its generators
// ended (returned, threw, closed, destroyed).
struct StackFixture {
  std::size_t in_use_before = in_use();
  static std::size_t in_use() {
    auto& pool = fiberloop::StackPool::local();
    return pool.mapped() - pool.cached();
  }
  ~StackFixture() { BOOST_CHECK_MESSAGE(in_use() == in_use_before, "fiber stacks leaked"); }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(generator, StackFixture)

BOOST_AUTO_TEST_CASE(send_yields_values_in_order_then_nullopt) {
  Strings log;
  Generator<int> gen([&](auto& g) {
    log.push_back("start");
    for (int i = 1; i <= 3; ++i) g.yield(i * 10);
    log.push_back("end");
  });
  // Nothing runs before the first send(), as with a Python generator.
  BOOST_TEST(log.empty());
  BOOST_TEST(!gen.started());
  BOOST_TEST(!gen.done());

  std::vector<std::optional<int>> got;
  for (int i = 0; i < 4; ++i) got.push_back(gen.send());
  std::vector<std::optional<int>> expected{10, 20, 30, std::nullopt};
  BOOST_TEST((got == expected));
  BOOST_TEST((log == Strings{"start", "end"}), boost::test_tools::per_element());
  BOOST_TEST(gen.started());
  BOOST_TEST(gen.done());
  BOOST_TEST(!gen.running());
}

BOOST_AUTO_TEST_CASE(send_after_done_throws) {
  Generator<int> gen([](auto& g) { g.yield(1); });
  BOOST_TEST(gen.send() == std::optional<int>(1));
  BOOST_TEST(!gen.send().has_value());
  BOOST_CHECK_THROW(gen.send(), RuntimeError);
  BOOST_CHECK_THROW(gen.send(), RuntimeError);
  BOOST_CHECK_THROW(gen.throw_into(std::make_exception_ptr(std::logic_error("x"))), RuntimeError);
  BOOST_TEST(gen.done());

  Generator<int, int> acc([](auto& g) { g.yield(g.yield(0)); });
  acc.send();
  acc.send(1);
  BOOST_TEST(!acc.send(2).has_value());
  BOOST_CHECK_THROW(acc.send(3), RuntimeError);
}

BOOST_AUTO_TEST_CASE(sent_values_reach_yield) {
  Strings received;
  Generator<int, int> acc([&](auto& g) {
    int total = 0;
    for (;;) {
      int v = g.yield(total);
      received.push_back(std::to_string(v));
      total += v;
    }
  });
  std::vector<std::optional<int>> got;
  got.push_back(acc.send());
  for (int v : {5, 10, -3, 100}) got.push_back(acc.send(v));
  std::vector<std::optional<int>> expected{0, 5, 15, 12, 112};
  BOOST_TEST((got == expected));
  BOOST_TEST((received == Strings{"5", "10", "-3", "100"}), boost::test_tools::per_element());
  BOOST_TEST(!acc.done());
  acc.close();
  BOOST_TEST(acc.done());
}

BOOST_AUTO_TEST_CASE(send_without_value_on_started_generator_throws) {
  Generator<int, int> acc([](auto& g) {
    int total = 0;
    for (;;) total += g.yield(total);
  });
  BOOST_TEST(acc.send() == std::optional<int>(0));
  BOOST_CHECK_THROW(acc.send(), RuntimeError);
  // The refused call neither resumed the body nor broke the generator.
  BOOST_TEST(!acc.done());
  BOOST_TEST(acc.send(7) == std::optional<int>(7));
  BOOST_TEST(acc.send(1) == std::optional<int>(8));
}

BOOST_AUTO_TEST_CASE(send_value_before_start_throws) {
  bool ran = false;
  Generator<int, int> acc([&](auto& g) {
    ran = true;
    int total = 0;
    for (;;) total += g.yield(total);
  });
  BOOST_CHECK_THROW(acc.send(5), RuntimeError);
  BOOST_TEST(!ran);
  BOOST_TEST(!acc.started());
  // The 5 was not kept for later either.
  BOOST_TEST(acc.send() == std::optional<int>(0));
  BOOST_TEST(acc.send(2) == std::optional<int>(2));
  BOOST_TEST(ran);
}

BOOST_AUTO_TEST_CASE(exception_from_body_propagates_and_finishes_it) {
  int destroyed = 0;
  Generator<int> gen([&](auto& g) {
    Counted c(destroyed);
    g.yield(1);
    throw std::logic_error("boom");
  });
  BOOST_TEST(gen.send() == std::optional<int>(1));
  std::string what;
  try {
    gen.send();
  } catch (const std::logic_error& e) {
    what = e.what();
  }
  BOOST_TEST(what == "boom");
  BOOST_TEST(destroyed == 1);
  BOOST_TEST(gen.done());
  BOOST_CHECK_THROW(gen.send(), RuntimeError);
  gen.close();  // no-op on a finished generator
}

BOOST_AUTO_TEST_CASE(exception_before_first_yield_propagates_from_first_send) {
  Generator<int, int> gen([](auto&) -> void { throw std::out_of_range("early"); });
  BOOST_CHECK_THROW(gen.send(), std::out_of_range);
  BOOST_TEST(gen.done());
  BOOST_CHECK_THROW(gen.send(1), RuntimeError);
}

BOOST_AUTO_TEST_CASE(throw_into_raises_at_the_yield_point) {
  Strings log;
  Generator<int, int> gen([&](auto& g) {
    try {
      g.yield(1);
      log.push_back("not reached");
    } catch (const std::runtime_error& e) {
      log.push_back(std::string("caught ") + e.what());
    }
    int v = g.yield(2);
    log.push_back("got " + std::to_string(v));
  });
  BOOST_TEST(gen.send() == std::optional<int>(1));
  auto next = gen.throw_into(std::make_exception_ptr(std::runtime_error("oops")));
  BOOST_TEST(next == std::optional<int>(2));
  BOOST_TEST(!gen.done());
  BOOST_TEST(!gen.send(42).has_value());
  BOOST_TEST((log == Strings{"caught oops", "got 42"}), boost::test_tools::per_element());
  BOOST_TEST(gen.done());
}

BOOST_AUTO_TEST_CASE(throw_into_not_caught_propagates_and_finishes_it) {
  int destroyed = 0;
  bool after_yield = false;
  Generator<int> gen([&](auto& g) {
    Counted c(destroyed);
    g.yield(1);
    after_yield = true;
  });
  gen.send();
  BOOST_CHECK_THROW(gen.throw_into(std::make_exception_ptr(std::invalid_argument("x"))),
                    std::invalid_argument);
  BOOST_TEST(!after_yield);
  BOOST_TEST(destroyed == 1);
  BOOST_TEST(gen.done());
  BOOST_CHECK_THROW(gen.send(), RuntimeError);
}

BOOST_AUTO_TEST_CASE(throw_into_unstarted_generator_rethrows_without_running) {
  bool ran = false;
  Generator<int> gen([&](auto& g) {
    ran = true;
    g.yield(1);
  });
  std::string what;
  try {
    gen.throw_into(std::make_exception_ptr(std::runtime_error("before start")));
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  BOOST_TEST(what == "before start");
  BOOST_TEST(!ran);
  BOOST_TEST(gen.done());
  BOOST_CHECK_THROW(gen.send(), RuntimeError);
  BOOST_TEST(!ran);
}

namespace {

// nest() holds a Counted in each of `levels` frames and yields at the bottom.
template <class Gen>
void nest(Gen& g, int levels, int& destroyed, bool& resumed) {
  Counted c(destroyed);
  std::string s(100, 'x');  // heap-owning local: leak-checked under ASan
  if (levels == 0) {
    g.yield(static_cast<int>(s.size()));
    resumed = true;
    return;
  }
  nest(g, levels - 1, destroyed, resumed);
}

}  // namespace

BOOST_AUTO_TEST_CASE(close_of_suspended_generator_unwinds_its_stack) {
  int destroyed = 0;
  bool resumed = false;
  Generator<int> gen([&](auto& g) {
    Counted outer(destroyed);
    nest(g, 4, destroyed, resumed);
  });
  BOOST_TEST(gen.send() == std::optional<int>(100));
  BOOST_TEST(destroyed == 0);
  gen.close();
  BOOST_TEST(destroyed == 6);  // the body's plus one per nest() frame
  BOOST_TEST(!resumed);
  BOOST_TEST(gen.done());
  gen.close();  // again: nothing left to do
  BOOST_TEST(destroyed == 6);
  BOOST_CHECK_THROW(gen.send(), RuntimeError);
}

BOOST_AUTO_TEST_CASE(destroying_suspended_generator_unwinds_its_stack) {
  int destroyed = 0;
  bool resumed = false;
  {
    Generator<int, int> gen([&](auto& g) {
      Counted outer(destroyed);
      nest(g, 2, destroyed, resumed);
    });
    gen.send();
    BOOST_TEST(destroyed == 0);
  }
  BOOST_TEST(destroyed == 4);
  BOOST_TEST(!resumed);
}

BOOST_AUTO_TEST_CASE(close_of_unstarted_or_finished_generator_is_a_no_op) {
  bool ran = false;
  Generator<int> unstarted([&](auto& g) {
    ran = true;
    g.yield(1);
  });
  unstarted.close();
  BOOST_TEST(!ran);
  BOOST_TEST(unstarted.done());
  BOOST_CHECK_THROW(unstarted.send(), RuntimeError);
  BOOST_TEST(!ran);

  int runs = 0;
  Generator<int> finished([&](auto&) { ++runs; });
  BOOST_TEST(!finished.send().has_value());
  finished.close();
  finished.close();
  BOOST_TEST(runs == 1);
  BOOST_TEST(finished.done());
}

BOOST_AUTO_TEST_CASE(destroying_unstarted_generator_releases_the_body) {
  auto token = std::make_shared<int>(0);
  bool ran = false;
  {
    Generator<int> gen([&ran, token](auto& g) {
      ran = true;
      g.yield(*token);
    });
    BOOST_TEST(token.use_count() == 2);
  }
  BOOST_TEST(!ran);
  BOOST_TEST(token.use_count() == 1);
}

BOOST_AUTO_TEST_CASE(yield_outside_the_body_throws) {
  Generator<int> gen([](auto& g) {
    g.yield(1);
    g.yield(2);
  });
  BOOST_CHECK_THROW(gen.yield(0), RuntimeError);  // unstarted
  BOOST_TEST(gen.send() == std::optional<int>(1));
  BOOST_CHECK_THROW(gen.yield(0), RuntimeError);  // suspended
  // Neither attempt disturbed it.
  BOOST_TEST(gen.send() == std::optional<int>(2));
  BOOST_TEST(!gen.send().has_value());
  BOOST_CHECK_THROW(gen.yield(0), RuntimeError);  // finished
}

BOOST_AUTO_TEST_CASE(resuming_a_generator_from_its_own_body_throws) {
  Strings log;
  Generator<int> gen([&log](auto& g) {
    BOOST_TEST(g.running());
    try {
      g.send();
    } catch (const RuntimeError&) {
      log.push_back("send");
    }
    try {
      g.throw_into(std::make_exception_ptr(std::logic_error("x")));
    } catch (const RuntimeError&) {
      log.push_back("throw_into");
    }
    try {
      g.close();
    } catch (const RuntimeError&) {
      log.push_back("close");
    }
    g.yield(1);
  });
  BOOST_TEST(gen.send() == std::optional<int>(1));
  BOOST_TEST((log == Strings{"send", "throw_into", "close"}), boost::test_tools::per_element());
  BOOST_TEST(!gen.running());
  BOOST_TEST(!gen.send().has_value());
}

BOOST_AUTO_TEST_CASE(nested_generator_yields_to_the_outer_body) {
  Strings log;
  Generator<std::string> outer([&log](auto& out) {
    Generator<int> inner([&log, &out](auto& in) {
      for (int i = 1; i <= 3; ++i) in.yield(i);
      try {
        out.yield("from inner");
      } catch (const RuntimeError&) {
        log.push_back("outer yield refused");
      }
    });
    while (auto v = inner.send()) {
      log.push_back("inner " + std::to_string(*v));
      out.yield("outer " + std::to_string(*v * 2));
    }
    log.push_back("inner done");
  });

  Strings got;
  while (auto s = outer.send()) got.push_back(*s);
  BOOST_TEST((got == Strings{"outer 2", "outer 4", "outer 6"}), boost::test_tools::per_element());
  BOOST_TEST((log == Strings{"inner 1", "inner 2", "inner 3", "outer yield refused", "inner done"}),
             boost::test_tools::per_element());
  BOOST_TEST(outer.done());
}

BOOST_AUTO_TEST_CASE(closing_outer_generator_unwinds_suspended_inner_one) {
  int destroyed = 0;
  bool resumed = false;
  Generator<int> outer([&](auto& out) {
    Counted c(destroyed);
    Generator<int> inner([&](auto& in) { nest(in, 3, destroyed, resumed); });
    out.yield(*inner.send());
    resumed = true;
  });
  BOOST_TEST(outer.send() == std::optional<int>(100));
  outer.close();
  // Outer's own Counted plus inner's four nest() frames, unwound by ~Generator.
  BOOST_TEST(destroyed == 5);
  BOOST_TEST(!resumed);
}

namespace {

int throw_deep(int depth) {
  std::string local = "frame " + std::to_string(depth) + std::string(40, '.');
  if (depth == 0) throw std::runtime_error(local);
  return throw_deep(depth - 1) + static_cast<int>(local.size());
}

}  // namespace

BOOST_AUTO_TEST_CASE(exceptions_thrown_and_caught_deep_inside_the_fiber) {
  // Under ASan this checks the switch annotations: unwinding 50 frames on a
  // fiber stack, repeatedly, must leave no stale poison or bogus reports.
  Generator<std::string> gen([](auto& g) {
    for (int round = 0; round < 5; ++round) {
      try {
        throw_deep(50);
        g.yield("no throw");
      } catch (const std::runtime_error& e) {
        g.yield(std::to_string(round) + ": " + e.what());
      }
    }
  });
  Strings got;
  while (auto s = gen.send()) got.push_back(*s);
  Strings expected;
  for (int round = 0; round < 5; ++round) {
    expected.push_back(std::to_string(round) + ": frame 0" + std::string(40, '.'));
  }
  BOOST_TEST(got == expected, boost::test_tools::per_element());
  BOOST_TEST(gen.done());

  // And the stack it leaves behind serves a new generator cleanly.
  Generator<int> next([](auto& g) {
    try {
      throw_deep(50);
    } catch (const std::runtime_error&) {
      g.yield(1);
    }
  });
  BOOST_TEST(next.send() == std::optional<int>(1));
  BOOST_TEST(!next.send().has_value());
}

BOOST_AUTO_TEST_CASE(many_generators_interleaved) {
  constexpr int kCount = 1000;
  constexpr int kRounds = 5;
  std::vector<std::unique_ptr<Generator<long, int>>> gens;
  for (int i = 0; i < kCount; ++i) {
    gens.push_back(std::make_unique<Generator<long, int>>([i](auto& g) {
      long total = i;
      for (;;) total += g.yield(total);
    }));
  }
  bool all_ok = true;
  for (int i = 0; i < kCount; ++i) all_ok = all_ok && gens[i]->send() == std::optional<long>(i);
  // Interleave: each round visits the generators in a different order.
  for (int round = 1; round <= kRounds; ++round) {
    for (int k = 0; k < kCount; ++k) {
      int i = (k * 7 + round * 13) % kCount;  // 7 is coprime to 1000: a permutation
      long expected = i + static_cast<long>(i) * round * (round + 1) / 2;
      all_ok = all_ok && gens[i]->send(i * round) == std::optional<long>(expected);
    }
  }
  BOOST_TEST(all_ok);
  // Half close explicitly, the rest are unwound by their destructors.
  for (int i = 0; i < kCount; i += 2) gens[i]->close();
  bool closed_ok = true;
  for (int i = 0; i < kCount; ++i) closed_ok = closed_ok && gens[i]->done() == (i % 2 == 0);
  BOOST_TEST(closed_ok);
}

BOOST_AUTO_TEST_CASE(move_only_yield_and_send_types) {
  Generator<std::unique_ptr<int>> gen([](auto& g) {
    for (int i = 1; i <= 3; ++i) g.yield(std::make_unique<int>(i));
  });
  std::vector<int> got;
  while (auto p = gen.send()) got.push_back(**p);
  BOOST_TEST(got == (std::vector<int>{1, 2, 3}), boost::test_tools::per_element());

  // Echo: the body takes ownership of what is sent and hands it back, +1.
  Generator<std::unique_ptr<int>, std::unique_ptr<int>> echo([](auto& g) {
    std::unique_ptr<int> p = g.yield(nullptr);
    while (p) {
      ++*p;
      p = g.yield(std::move(p));
    }
  });
  auto first = echo.send();
  BOOST_REQUIRE(first.has_value());
  BOOST_TEST(*first == nullptr);
  auto back = echo.send(std::make_unique<int>(41));
  BOOST_REQUIRE((back.has_value() && *back != nullptr));
  BOOST_TEST(**back == 42);
  back = echo.send(std::move(*back));
  BOOST_REQUIRE((back.has_value() && *back != nullptr));
  BOOST_TEST(**back == 43);
  BOOST_TEST(!echo.send(nullptr).has_value());
}

BOOST_AUTO_TEST_CASE(catch_all_that_rethrows_fiber_unwind_still_unwinds) {
  Strings log;
  int destroyed = 0;
  Generator<int> gen([&](auto& g) {
    Counted c(destroyed);
    for (int i = 1;; ++i) {
      try {
        g.yield(i);
      } catch (const fiberloop::FiberUnwind&) {
        log.push_back("unwind");
        throw;
      } catch (...) {
        log.push_back("other");
      }
    }
  });
  BOOST_TEST(gen.send() == std::optional<int>(1));
  // An ordinary exception lands in catch (...) and the body carries on.
  BOOST_TEST(gen.throw_into(std::make_exception_ptr(42)) == std::optional<int>(2));
  BOOST_TEST(destroyed == 0);
  gen.close();
  BOOST_TEST((log == Strings{"other", "unwind"}), boost::test_tools::per_element());
  BOOST_TEST(destroyed == 1);
  BOOST_TEST(gen.done());
}

// throw_into(nullptr) is refused (issue 6, item 7: it crashed in
// rethrow_exception) and leaves the generator as it was.
BOOST_AUTO_TEST_CASE(throw_into_null_is_invalid_argument_and_changes_nothing) {
  Generator<int> gen([](auto& g) {
    g.yield(1);
    g.yield(2);
  });
  BOOST_CHECK_THROW(gen.throw_into(nullptr), std::invalid_argument);  // not started
  BOOST_TEST(!gen.started());
  BOOST_TEST(gen.send().value() == 1);
  BOOST_CHECK_THROW(gen.throw_into(nullptr), std::invalid_argument);  // suspended
  BOOST_TEST(gen.send().value() == 2);
  BOOST_TEST(!gen.send().has_value());
  BOOST_CHECK_THROW(gen.throw_into(nullptr), std::invalid_argument);  // finished
}

// Generators move (issue 6, item 12): a vector of them, one returned by
// name, moved while suspended mid-body; the moved-from one is empty.
namespace {
Generator<int> countdown(int from) {
  Generator<int> gen([from](auto& g) {
    for (int i = from; i > 0; --i) g.yield(i);
  });
  return gen;  // by name: a move (or elided)
}
}  // namespace

BOOST_AUTO_TEST_CASE(generators_move_even_while_suspended) {
  std::vector<Generator<int>> gens;
  for (int i = 1; i <= 40; ++i) gens.push_back(countdown(i));  // reallocates: moves
  for (int i = 0; i < 40; ++i) BOOST_TEST(gens[i].send().value() == i + 1);
  gens.reserve(1000);  // moves every suspended generator again
  long sum = 0;
  for (auto& g : gens) {
    while (auto v = g.send()) sum += *v;
  }
  BOOST_TEST(sum == 39L * 40 * 41 / 6);  // gens[i] has i, i-1, ..., 1 left: sum of i(i+1)/2
  Generator<int> a = countdown(3);
  BOOST_TEST(a.send().value() == 3);
  Generator<int> b = std::move(a);
  BOOST_TEST(a.done());  // NOLINT: moved-from is empty on purpose
  BOOST_CHECK_THROW(a.send(), RuntimeError);
  BOOST_TEST(b.send().value() == 2);
  int destroyed = 0;
  Generator<int> c([&destroyed](auto& g) {
    Counted guard(destroyed);
    g.yield(1);
    g.yield(2);
  });
  c.send();
  b = std::move(c);  // b's old body finished; c's suspended one moves in
  BOOST_TEST(destroyed == 0);
  BOOST_TEST(b.send().value() == 2);
  b = countdown(1);  // the suspended body is unwound by the assignment
  BOOST_TEST(destroyed == 1);
  BOOST_TEST(b.send().value() == 1);
}

BOOST_AUTO_TEST_CASE(range_for_over_a_generator) {
  std::vector<int> seen;
  for (int v : countdown(4)) seen.push_back(v);
  BOOST_TEST(seen == (std::vector<int>{4, 3, 2, 1}), boost::test_tools::per_element());
  // An exception from the body comes out of the loop; an empty body yields nothing.
  Generator<std::string> failing([](auto& g) {
    g.yield("a");
    throw std::runtime_error("late");
  });
  std::string got;
  BOOST_CHECK_THROW(
      {
        for (const std::string& s : failing) got += s;
      },
      std::runtime_error);
  BOOST_TEST(got == "a");
  int n = 0;
  for ([[maybe_unused]] int v : Generator<int>([](auto&) {})) ++n;
  BOOST_TEST(n == 0);
  // Move-only values can be taken out through the iterator.
  Generator<std::unique_ptr<int>> ptrs([](auto& g) {
    for (int i = 0; i < 3; ++i) g.yield(std::make_unique<int>(i));
  });
  int total = 0;
  for (auto& p : ptrs) {
    std::unique_ptr<int> mine = std::move(p);
    total += *mine;
  }
  BOOST_TEST(total == 3);
}

BOOST_AUTO_TEST_SUITE_END()
