// task_recycling_test.cpp: a finished task's state kept as its type's spare
// and made the next task of that type (detail::TaskState::make()). The
// reuse itself is checked only where it happens (builds without
// sanitizers); everything else must hold in every build: a recycled task is
// a new task in all a user can see.
#include <boost/test/unit_test.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define FIBERLOOP_TEST_HAVE_VALGRIND 1
#endif

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::EventLoop;
using fiberloop::StackPool;
using fiberloop::Task;
using fiberloop::TaskOptions;

namespace {

// recycles(): states are recycled here; not in sanitizer builds, nor under
// valgrind (the pool marks each reused stack undefined for memcheck, which a
// spare would skip).
bool recycles() {
#ifdef FIBERLOOP_TEST_HAVE_VALGRIND
  if (RUNNING_ON_VALGRIND) return false;
#endif
  return fiberloop::detail::kPlaceStates;
}

// Each call site of create_task is a task type of its own: these helpers
// give the tests one type to spawn again and again.
Task<int> spawn_adder(EventLoop& loop, int a, const TaskOptions& options = {}) {
  return loop.create_task(options, [a] { return a + 1; });
}

Task<std::string> spawn_stringer(EventLoop& loop, int mode) {
  return loop.create_task([mode]() -> std::string {
    if (mode == 1) throw std::runtime_error("failed on purpose");
    if (mode == 2) fiberloop::sleep(3600);  // to be cancelled
    return "value " + std::to_string(mode);
  });
}

const void* state_of(const fiberloop::Future<int>& f) { return f.state_ptr(); }

unsigned long number_of(const std::string& name) { return std::stoul(name.substr(5)); }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(task_recycling, LoopFixture)

BOOST_AUTO_TEST_CASE(a_finished_state_is_the_next_task_of_its_type) {
  const void* first = nullptr;
  const void* second = nullptr;
  run([&] {
    auto a = spawn_adder(loop, 1);
    BOOST_TEST(fiberloop::await(a) == 2);
    first = state_of(a);
    a = {};
    auto b = spawn_adder(loop, 10);
    second = state_of(b);
    BOOST_TEST(fiberloop::await(b) == 11);
  });
  if (recycles()) BOOST_TEST(first == second);
}

BOOST_AUTO_TEST_CASE(a_recycled_task_is_a_new_task) {
  run([&] {
    unsigned long first_number = 0;
    {
      auto t = spawn_adder(loop, 0);
      first_number = number_of(t.get_name());
      fiberloop::await(t);
    }
    // `a` has every field a run can change changed, and becomes the spare.
    auto a = spawn_adder(loop, 1);
    a.set_name(std::string(200, 'n'));  // a name on the heap
    int first_callbacks = 0;
    a.add_done_callback([&](auto) { ++first_callbacks; });
    a.cancel();
    BOOST_TEST(a.cancelling() == 1);
    a.uncancel();  // taken back before it started: it runs
    BOOST_TEST(fiberloop::await(a) == 2);
    fiberloop::sleep(0);  // the done callback runs
    BOOST_TEST(first_callbacks == 1);
    const void* spare = state_of(a);
    a = {};

    auto b = spawn_adder(loop, 41);
    if (recycles()) BOOST_TEST(state_of(b) == spare);
    BOOST_TEST(!b.done());  // lazy: pending until the loop steps it
    BOOST_TEST(b.cancelling() == 0);
    BOOST_TEST(b.get_name().rfind("Task-", 0) == 0);
    BOOST_TEST(number_of(b.get_name()) > first_number);
    int second_callbacks = 0;
    b.add_done_callback([&](auto) { ++second_callbacks; });
    bool listed = false;
    for (auto& t : loop.all_tasks()) listed = listed || t == fiberloop::AnyTask(b);
    BOOST_TEST(listed);
    BOOST_TEST(fiberloop::await(b) == 42);
    fiberloop::sleep(0);
    BOOST_TEST(second_callbacks == 1);
    BOOST_TEST(first_callbacks == 1);  // the first task's callback did not come back
  });
}

BOOST_AUTO_TEST_CASE(current_task_inside_a_recycled_task_is_that_task) {
  run([&] {
    for (int i = 0; i < 3; ++i) {
      auto t = loop.create_task([] { return fiberloop::current_task()->get_name(); });
      BOOST_TEST(fiberloop::await(t) == t.get_name());
    }
  });
}

BOOST_AUTO_TEST_CASE(a_task_that_failed_or_was_cancelled_is_not_recycled) {
  // A failed task's state is destroyed as before: its unretrieved exception
  // is reported when its last handle goes, and the next task of its type
  // starts clean.
  expected_reports = 1;
  run([&] {
    auto ok = spawn_stringer(loop, 0);  // leaves a spare behind
    BOOST_TEST(fiberloop::await(ok) == "value 0");
    ok = {};
    auto failed = spawn_stringer(loop, 1);
    for (int i = 0; i < 10 && !failed.done(); ++i) fiberloop::sleep(0);
    BOOST_REQUIRE(failed.done());
    BOOST_TEST(reports.empty());
    failed = {};  // exception never retrieved
    BOOST_TEST(reports.size() == 1u);
    BOOST_TEST(reports[0] == "Task exception was never retrieved");
    auto next = spawn_stringer(loop, 3);
    BOOST_TEST(!next.done());
    BOOST_TEST(fiberloop::await(next) == "value 3");
    next = {};

    auto cancelled = spawn_stringer(loop, 2);
    fiberloop::sleep(0);
    cancelled.cancel();
    BOOST_CHECK_THROW(fiberloop::await(cancelled), fiberloop::CancelledError);
    cancelled = {};
    auto after = spawn_stringer(loop, 4);
    BOOST_TEST(!after.cancelled());
    BOOST_TEST(after.cancelling() == 0);
    BOOST_TEST(fiberloop::await(after) == "value 4");
  });
}

BOOST_AUTO_TEST_CASE(a_recycled_state_holds_no_value_of_the_task_before) {
  // The value goes when the last handle does, spare or not: the second
  // task's result is its own, and a value left unread is not kept alive.
  auto tracker = std::make_shared<int>(0);
  std::weak_ptr<int> watch = tracker;
  run([&] {
    auto holder = loop.create_task([tracker]() mutable { return std::move(tracker); });
    BOOST_TEST(fiberloop::await(holder) != nullptr);
  });
  tracker.reset();
  BOOST_TEST(watch.expired());
}

BOOST_AUTO_TEST_CASE(a_spare_serves_another_loop) {
  const void* first = nullptr;
  {
    EventLoop other;
    auto t = spawn_adder(other, 1);
    BOOST_TEST(other.run_until_complete(t) == 2);
    first = state_of(t);
  }  // the first loop is gone; the spare outlives it
  run([&] {
    auto t = spawn_adder(loop, 2);
    if (recycles()) BOOST_TEST(state_of(t) == first);
    BOOST_TEST(&t.get_loop() == &loop);
    BOOST_TEST(fiberloop::await(t) == 3);
  });
}

BOOST_AUTO_TEST_CASE(an_explicit_stack_size_or_a_new_default_takes_a_new_state) {
  auto& pool = StackPool::local();
  const void* spare = nullptr;
  run([&] {
    auto a = spawn_adder(loop, 1);
    fiberloop::await(a);
    spare = state_of(a);
    a = {};
    auto sized = spawn_adder(loop, 1, TaskOptions{.stack_size = 2 * StackPool::kMinSize});
    if (recycles()) BOOST_TEST(state_of(sized) != spare);  // the spare still holds it
    BOOST_TEST(fiberloop::await(sized) == 2);
  });
  std::size_t old_default = pool.default_size();
  pool.set_default_size(old_default * 2);  // drops the spares: their stacks are the old size
  run([&] {
    auto t = spawn_adder(loop, 5);
    if (recycles()) BOOST_TEST(state_of(t) != spare);  // a stack of the new size
    BOOST_TEST(fiberloop::await(t) == 6);
  });
  pool.set_default_size(old_default);
}

BOOST_AUTO_TEST_CASE(trim_frees_the_spares_and_their_stacks) {
  // On a thread of its own: its pool holds nothing else.
  std::size_t mapped_before_trim = 0, mapped_after = 1, in_use = 1, retained = 1;
  int sum = 0;
  std::thread worker([&] {
    {
      EventLoop loop;
      for (int i = 0; i < 3; ++i) sum += loop.run_until_complete(spawn_adder(loop, i));
      loop.run_until_complete(spawn_stringer(loop, 0));
    }
    auto& pool = StackPool::local();
    mapped_before_trim = pool.mapped();
    in_use = pool.in_use();
    retained = pool.retained();
    pool.trim();
    mapped_after = pool.mapped();
  });
  worker.join();
  BOOST_TEST(sum == 6);
  BOOST_TEST(in_use == 0u);
  BOOST_TEST(retained == 0u);  // a spare is counted among the cached stacks
  if (recycles()) BOOST_TEST(mapped_before_trim >= 2u);  // two task types, two spares
  BOOST_TEST(mapped_after == 0u);
}

BOOST_AUTO_TEST_CASE(eager_tasks_recycle_and_stay_eager) {
  const TaskOptions eager{.eager_start = true};
  run([&] {
    for (int i = 0; i < 4; ++i) {
      auto t = spawn_adder(loop, i, eager);
      BOOST_TEST(t.done());
      BOOST_TEST(t.result() == i + 1);
    }
    auto lazy = spawn_adder(loop, 7);
    BOOST_TEST(!lazy.done());
    BOOST_TEST(fiberloop::await(lazy) == 8);
  });
}

BOOST_AUTO_TEST_SUITE_END()
