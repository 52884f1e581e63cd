// stack_overflow_test.cpp: an overflow into a guard dies with one line naming
// the task or Generator; every other SIGSEGV still reaches the user's handler.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fiberloop/detail/fiber.hpp>
#include <fiberloop/detail/stack_placement.hpp>
#include <fiberloop/fiberloop.hpp>
#include <cctype>
#include <map>
#include <string>
#include <thread>

namespace {

using fiberloop::StackPool;
using fiberloop::TaskOptions;

// The signal an overflow finally dies by. Under ASan, the disposition the
// library hands the fault back to is ASan's own SEGV handler, which reports
// and then aborts (ASAN_OPTIONS=abort_on_error=1).
#if defined(__SANITIZE_ADDRESS__)
constexpr int kFatalSignal = SIGABRT;
#else
constexpr int kFatalSignal = SIGSEGV;
#endif

// died_of_the_fault(d): the child died the way a fault kills this build.
// Under TSan the disposition handed back to is TSan's own SEGV handler, which
// reports and exits with its exit code (66) instead of re-raising.
struct Death;
bool died_of_the_fault(const Death& d);

volatile int recursion_limit = INT_MAX;  // keeps the compiler from proving the recursion endless

__attribute__((noinline)) int recurse_forever(int depth) {
  volatile char pad[512];
  pad[0] = static_cast<char>(depth);
  if (depth == recursion_limit) return 0;
  return recurse_forever(depth + 1) + pad[0];
}

// 16 KiB frames that write only their lowest bytes: built without stack-clash
// probing, each call moves the stack pointer 16 KiB at once, so only a guard
// wider than a frame catches them.
__attribute__((noinline, optimize("no-stack-clash-protection"))) int big_frames_unprobed(
    int depth) {
  volatile char frame[16384];
  frame[0] = static_cast<char>(depth);
  if (depth == recursion_limit) return 0;
  return big_frames_unprobed(depth + 1) + frame[0];
}

// The same with probing (this file is built with -fstack-clash-protection,
// which fiberloop's dependency carries): a one-page guard suffices.
__attribute__((noinline)) int big_frames_probed(int depth) {
  volatile char frame[16384];
  frame[0] = static_cast<char>(depth);
  if (depth == recursion_limit) return 0;
  return big_frames_probed(depth + 1) + frame[0];
}

struct Death {
  int signal = 0;      // the signal that killed the child, 0 if it exited
  int exit_code = -1;  // its exit status otherwise
  std::string err;     // everything it wrote to stderr
};

bool died_of_the_fault(const Death& d) {
#if defined(__SANITIZE_THREAD__)
  if (d.exit_code == 66) return true;
#endif
  return d.signal == kFatalSignal;
}

Death collect(pid_t pid, int err_fd) {
  Death d;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(err_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    d.err.append(buf, static_cast<std::size_t>(n));
  }
  ::close(err_fd);
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  BOOST_REQUIRE_EQUAL(waited, pid);
  if (WIFSIGNALED(status)) d.signal = WTERMSIG(status);
  if (WIFEXITED(status)) d.exit_code = WEXITSTATUS(status);
  return d;
}

// in_fresh_process(scenario) runs this test binary again, where a static
// initializer plays `scenario` as a whole program would: before Boost.Test
// installs handlers of its own, and before fiberloop has allocated a stack.
Death in_fresh_process(const char* scenario) {
  int fds[2];
  BOOST_REQUIRE_EQUAL(::pipe(fds), 0);
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], STDERR_FILENO);
    ::setenv("FIBERLOOP_TEST_SCENARIO", scenario, 1);
    // argv[0], not /proc/self/exe: under valgrind that is valgrind's tool,
    // and the scenarios run natively then.
    char* self = boost::unit_test::framework::master_test_suite().argv[0];
    char* argv[] = {self, nullptr};
    ::execv(self, argv);
    ::_exit(4);
  }
  ::close(fds[1]);
  return collect(pid, fds[0]);
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// run_task(options, fn) runs fn as a task on a fresh loop.
template <class Fn>
void run_task(TaskOptions options, Fn fn) {
  fiberloop::EventLoop loop;
  loop.run_until_complete(loop.create_task(std::move(options), fn));
}

// The user's handler: says so and exits 42, as a crash reporter might.
void user_handler(int, siginfo_t*, void*) {
  static const char msg[] = "user handler ran\n";
  ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
  ::_exit(42);
}

void install_user_handler() {
  struct sigaction sa {};
  sa.sa_sigaction = user_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, nullptr);
}

// fault_elsewhere() writes to a PROT_NONE page that is no fiber stack's guard.
void fault_elsewhere() {
  void* p = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  *static_cast<volatile char*>(p) = 1;
}

// overflow_on_a_placed_stack(label_at_the_call) runs an endless recursion on
// a fiber whose stack came with its owner's room from place_state(),
// labelled by that call or afterwards, as a task state built in the room is.
void overflow_on_a_placed_stack(bool label_at_the_call) {
  namespace fd = fiberloop::detail;
  static const std::string name = "placed-state";
  fd::StackLabel label{&name, 9};
  fd::PlacedState placed =
      fd::place_state(64, 0, 2 * StackPool::kMinSize, label_at_the_call ? label : fd::StackLabel{});
  if (!label_at_the_call) fd::label_fiber_stack(placed.stack.slot, label);
  fd::Fiber fiber;
  fiber.create(placed.stack, [] { recurse_forever(0); });
  fiber.resume();
}

void allocate_a_stack() {
  fiberloop::Generator<int> gen([](auto& g) { g.yield(1); });
  gen.send();
}

// The scenarios in_fresh_process() plays: each is a whole program.
const std::map<std::string, void (*)()> kScenarios = {
    {"named_task",
     [] {
       run_task(TaskOptions{"deep-recursion-7", 4 * StackPool::kMinSize},
                [] { return recurse_forever(0); });
     }},
    {"unnamed_task", [] { run_task(TaskOptions{}, [] { return recurse_forever(0); }); }},
    {"generator",
     [] {
       fiberloop::Generator<int> gen([](auto& g) { g.yield(recurse_forever(0)); },
                                     2 * StackPool::kMinSize);
       gen.send();
     }},
    {"generator_in_task",
     [] {
       run_task(TaskOptions{"driver", 0}, [] {
         fiberloop::Generator<int> gen([](auto& g) { g.yield(recurse_forever(0)); },
                                       2 * StackPool::kMinSize);
         return *gen.send();
       });
     }},
    {"generator_in_unnamed_task",
     [] {
       run_task(TaskOptions{}, [] {
         fiberloop::Generator<int> gen([](auto& g) { g.yield(recurse_forever(0)); },
                                       2 * StackPool::kMinSize);
         return *gen.send();
       });
     }},
    {"big_frames_wide_guard",
     [] {
       run_task(TaskOptions{"big-frames", 4 * StackPool::kMinSize},
                [] { return big_frames_unprobed(0); });
     }},
    {"big_frames_probed_small_guard",
     [] {
       StackPool::local().set_guard_size(4096);
       run_task(TaskOptions{"probed-frames", 4 * StackPool::kMinSize},
                [] { return big_frames_probed(0); });
     }},
    {"task_on_another_thread",
     [] {
       // That thread gets its own alternate signal stack.
       std::thread t([] {
         run_task(TaskOptions{"worker-thread-task", 0}, [] { return recurse_forever(0); });
       });
       t.join();
     }},
    {"user_before_foreign",
     [] {
       install_user_handler();
       allocate_a_stack();  // installs fiberloop's handler, which chains to the user's
       fault_elsewhere();
     }},
    {"user_before_overflow",
     [] {
       install_user_handler();
       run_task(TaskOptions{"overflowing", 0}, [] { return recurse_forever(0); });
     }},
    {"user_after_foreign",
     [] {
       allocate_a_stack();
       install_user_handler();
       fault_elsewhere();
     }},
    {"killed_by_sigsegv",
     [] {
       allocate_a_stack();
       ::kill(::getpid(), SIGSEGV);
     }},
    {"fault_elsewhere",
     [] {
       allocate_a_stack();
       fault_elsewhere();
     }},
    {"task_on_a_reused_stack",
     [] {
       // The second task's state and fiber land on the slot the first freed.
       fiberloop::EventLoop loop;
       loop.run_until_complete(
           loop.create_task(TaskOptions{"finished-first", 0}, [] { return 1; }));
       loop.run_until_complete(
           loop.create_task(TaskOptions{"overflows-second", 0}, [] { return recurse_forever(0); }));
     }},
    {"recycled_task",
     [] {
       // Both tasks are of one type: the second recycles the first's state
       // (in builds that recycle) and must be reported by its own number.
       fiberloop::EventLoop loop;
       auto spawn = [&](bool deep) {
         return loop.create_task([deep] { return deep ? recurse_forever(0) : 1; });
       };
       std::string first;
       {
         auto t = spawn(false);
         loop.run_until_complete(t);
         first = t.get_name();
       }
       std::fprintf(stderr, "first: %s\n", first.c_str());
       loop.run_until_complete(spawn(true));
     }},
    {"placed_labelled_at_the_call", [] { overflow_on_a_placed_stack(true); }},
    {"placed_labelled_later", [] { overflow_on_a_placed_stack(false); }},
    {"generator_on_a_task_stack",
     [] {
       fiberloop::EventLoop loop;
       loop.run_until_complete(loop.create_task(TaskOptions{"finished-task", 0}, [] { return 1; }));
       fiberloop::Generator<int> gen([](auto& g) { g.yield(recurse_forever(0)); });
       gen.send();
     }},
};

struct PlayScenario {
  PlayScenario() {
    const char* name = std::getenv("FIBERLOOP_TEST_SCENARIO");
    if (!name) return;
    ::alarm(20);
    try {
      kScenarios.at(name)();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(5);  // not reached if the scenario died as it should
  }
} play_scenario;

const std::string kSuffix =
    " B below its end); raise TaskOptions::stack_size or StackPool default\n";

}  // namespace

BOOST_AUTO_TEST_SUITE(stack_overflow)

BOOST_AUTO_TEST_CASE(unbounded_recursion_in_a_named_task_names_it) {
  std::size_t size = 4 * StackPool::kMinSize;
  Death d = in_fresh_process("named_task");
  BOOST_TEST(died_of_the_fault(d), d.err);
  std::string head = "fiberloop: stack overflow in Task 'deep-recursion-7' (stack " +
                     std::to_string(size >> 10) + " KiB, fault ";
  BOOST_TEST(d.err.find(head) != std::string::npos, d.err);
  BOOST_TEST(d.err.find(kSuffix) != std::string::npos, d.err);
  BOOST_TEST(count_of(d.err, "fiberloop:") == 1, d.err);
}

BOOST_AUTO_TEST_CASE(a_task_without_a_name_is_named_task_n) {
  Death d = in_fresh_process("unnamed_task");
  BOOST_TEST(died_of_the_fault(d), d.err);
  BOOST_TEST(d.err.find("fiberloop: stack overflow in Task 'Task-") != std::string::npos, d.err);
  std::size_t kib = StackPool::kDefaultSize >> 10;
  std::string size =
      "(stack " + (kib % 1024 ? std::to_string(kib) + " KiB" : std::to_string(kib >> 10) + " MiB") +
      ", fault ";
  BOOST_TEST(d.err.find(size) != std::string::npos, d.err);
}

BOOST_AUTO_TEST_CASE(unbounded_recursion_in_a_generator_says_generator) {
  std::size_t size = 2 * StackPool::kMinSize;
  Death d = in_fresh_process("generator");
  BOOST_TEST(died_of_the_fault(d), d.err);
  std::string head = "fiberloop: stack overflow in Generator (stack " + std::to_string(size >> 10) +
                     " KiB, fault ";
  BOOST_TEST(d.err.find(head) != std::string::npos, d.err);
  BOOST_TEST(
      d.err.find(" B below its end); raise the Generator's stack_size or StackPool default") !=
          std::string::npos,
      d.err);
}

BOOST_AUTO_TEST_CASE(a_generator_driven_by_a_task_names_the_task_too) {
  Death d = in_fresh_process("generator_in_task");
  BOOST_TEST(died_of_the_fault(d), d.err);
  BOOST_TEST(d.err.find("fiberloop: stack overflow in Generator driven by Task 'driver' (stack ") !=
                 std::string::npos,
             d.err);
}

BOOST_AUTO_TEST_CASE(a_generator_driven_by_an_unnamed_task_names_it_task_n) {
  // The handler prints the task's number itself: building "Task-N" would
  // allocate inside the signal handler.
  Death d = in_fresh_process("generator_in_unnamed_task");
  BOOST_TEST(died_of_the_fault(d), d.err);
  std::string head = "fiberloop: stack overflow in Generator driven by Task 'Task-";
  std::size_t at = d.err.find(head);
  BOOST_TEST_REQUIRE(at != std::string::npos, d.err);
  std::size_t digits = at + head.size();
  BOOST_TEST(std::isdigit(static_cast<unsigned char>(d.err[digits])), d.err);
  BOOST_TEST(d.err.find("' (stack ", digits) != std::string::npos, d.err);
  BOOST_TEST(count_of(d.err, "fiberloop: stack overflow") == 1, d.err);
}

BOOST_AUTO_TEST_CASE(an_overflow_on_another_thread_is_named_too) {
  Death d = in_fresh_process("task_on_another_thread");
  BOOST_TEST(died_of_the_fault(d), d.err);
  BOOST_TEST(
      d.err.find("fiberloop: stack overflow in Task 'worker-thread-task'") != std::string::npos,
      d.err);
}

BOOST_AUTO_TEST_CASE(frames_of_16_kib_are_caught_by_the_wide_guard_without_probing) {
  Death d = in_fresh_process("big_frames_wide_guard");
  BOOST_TEST(died_of_the_fault(d), d.err);
  BOOST_TEST(d.err.find("fiberloop: stack overflow in Task 'big-frames'") != std::string::npos,
             d.err);
}

BOOST_AUTO_TEST_CASE(frames_of_16_kib_are_caught_by_a_4_kib_guard_with_probing) {
  Death d = in_fresh_process("big_frames_probed_small_guard");
  BOOST_TEST(died_of_the_fault(d), d.err);
  BOOST_TEST(d.err.find("fiberloop: stack overflow in Task 'probed-frames'") != std::string::npos,
             d.err);
}

BOOST_AUTO_TEST_CASE(a_foreign_fault_reaches_a_user_handler_installed_before) {
  Death d = in_fresh_process("user_before_foreign");
  BOOST_TEST(d.exit_code == 42, d.err << " signal " << d.signal);
  BOOST_TEST(d.err.find("user handler ran") != std::string::npos, d.err);
  BOOST_TEST(d.err.find("fiberloop:") == std::string::npos, d.err);
}

BOOST_AUTO_TEST_CASE(an_overflow_is_named_then_reaches_a_user_handler_installed_before) {
  Death d = in_fresh_process("user_before_overflow");
  BOOST_TEST(d.exit_code == 42, d.err << " signal " << d.signal);
  BOOST_TEST(d.err.find("fiberloop: stack overflow in Task 'overflowing'") != std::string::npos,
             d.err);
  BOOST_TEST(d.err.find("user handler ran") > d.err.find("fiberloop:"), d.err);
}

BOOST_AUTO_TEST_CASE(a_foreign_fault_reaches_a_user_handler_installed_after) {
  Death d = in_fresh_process("user_after_foreign");
  BOOST_TEST(d.exit_code == 42, d.err << " signal " << d.signal);
  BOOST_TEST(d.err.find("fiberloop:") == std::string::npos, d.err);
}

BOOST_AUTO_TEST_CASE(a_sigsegv_sent_by_kill_still_kills) {
  Death d = in_fresh_process("killed_by_sigsegv");
  BOOST_TEST(died_of_the_fault(d), d.err << " exit " << d.exit_code);
  BOOST_TEST(d.err.find("fiberloop:") == std::string::npos, d.err);
}

BOOST_AUTO_TEST_CASE(a_fault_elsewhere_dies_as_usual_without_a_report) {
  Death d = in_fresh_process("fault_elsewhere");
  BOOST_TEST(died_of_the_fault(d), d.err);
  BOOST_TEST(d.err.find("fiberloop:") == std::string::npos, d.err);
}

BOOST_AUTO_TEST_CASE(a_task_on_a_stack_another_task_used_is_named_by_its_own_name) {
  Death d = in_fresh_process("task_on_a_reused_stack");
  BOOST_TEST(died_of_the_fault(d), d.err);
  BOOST_TEST(
      d.err.find("fiberloop: stack overflow in Task 'overflows-second'") != std::string::npos,
      d.err);
  BOOST_TEST(d.err.find("finished-first") == std::string::npos, d.err);
}

BOOST_AUTO_TEST_CASE(a_recycled_task_is_named_by_its_own_number) {
  Death d = in_fresh_process("recycled_task");
  BOOST_TEST(died_of_the_fault(d), d.err);
  std::size_t at = d.err.find("first: Task-");
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, d.err);
  unsigned long first = std::stoul(d.err.substr(at + 12));
  std::string second = "fiberloop: stack overflow in Task 'Task-" + std::to_string(first + 1) + "'";
  BOOST_TEST(d.err.find(second) != std::string::npos, d.err);
  BOOST_TEST(count_of(d.err, "'Task-" + std::to_string(first) + "'") == 0, d.err);
}

BOOST_AUTO_TEST_CASE(a_generator_on_a_stack_a_task_used_says_generator) {
  Death d = in_fresh_process("generator_on_a_task_stack");
  BOOST_TEST(died_of_the_fault(d), d.err);
  BOOST_TEST(d.err.find("fiberloop: stack overflow in Generator (stack ") != std::string::npos,
             d.err);
  BOOST_TEST(d.err.find("finished-task") == std::string::npos, d.err);
}

BOOST_AUTO_TEST_CASE(a_fiber_on_a_stack_from_place_state_is_named_by_its_label) {
  for (const char* scenario : {"placed_labelled_at_the_call", "placed_labelled_later"}) {
    Death d = in_fresh_process(scenario);
    BOOST_TEST(died_of_the_fault(d), scenario << ": " << d.err);
    BOOST_TEST(d.err.find("fiberloop: stack overflow in Task 'placed-state' (stack ") !=
                   std::string::npos,
               scenario << ": " << d.err);
  }
}

BOOST_AUTO_TEST_SUITE_END()
