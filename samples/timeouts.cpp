// timeouts: wait_for() and timeout scopes around slow work, printing what
// timed out. The deadlines (50 ms) and the slow work (10 s) are far apart, so
// the output is the same on every run.
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>

namespace {

// lookup(delay, value) is some work that takes `delay` seconds.
int lookup(double delay, int value) {
  fiberloop::sleep(delay);
  return value;
}

}  // namespace

int main() {
  fiberloop::run([] {
    auto& loop = fiberloop::get_running_loop();

    // 1. wait_for on a task that finishes in time returns its result.
    int fast = fiberloop::wait_for(fiberloop::spawn(lookup, 0.001, 42), 1.0);
    std::cout << "fast lookup: " << fast << "\n";

    // 2. wait_for on a slow task: the task is cancelled, then TimeoutError.
    auto slow = fiberloop::spawn(lookup, 10.0, 0);
    try {
      fiberloop::wait_for(slow, 0.05);
    } catch (const fiberloop::TimeoutError&) {
      std::cout << "slow lookup timed out; its task was cancelled: "
                << (slow.cancelled() ? "yes" : "no") << "\n";
    }

    // 3. with_timeout runs code of this task under a deadline.
    try {
      fiberloop::with_timeout(0.05, [] {
        std::cout << "downloading...\n";
        fiberloop::sleep(10);
        std::cout << "never printed\n";
      });
    } catch (const fiberloop::TimeoutError&) {
      std::cout << "download timed out\n";
    }

    // 4. A result produced in answer to the expiry wins over the timeout.
    int partial = fiberloop::with_timeout(0.05, [] {
      try {
        fiberloop::sleep(10);
      } catch (const fiberloop::CancelledError&) {
        return 7;  // what was computed so far
      }
      return 100;
    });
    std::cout << "partial result kept: " << partial << "\n";

    // 5. A scope object: no deadline at first, one set later with reschedule().
    fiberloop::Timeout scope = fiberloop::timeout(std::nullopt);
    try {
      fiberloop::sleep(0.001);
      scope.reschedule(loop.time() + 0.05);
      fiberloop::sleep(10);
    } catch (...) {
      try {
        scope.exit(std::current_exception());
      } catch (const fiberloop::TimeoutError&) {
        std::cout << "rescheduled scope expired: " << (scope.expired() ? "yes" : "no") << "\n";
      }
    }

    // 6. Nested scopes: the inner one expires; the outer goes on in time.
    fiberloop::with_timeout(1.0, [] {
      try {
        fiberloop::with_timeout(0.05, [] { fiberloop::sleep(10); });
      } catch (const fiberloop::TimeoutError&) {
        std::cout << "inner scope timed out, outer still running\n";
      }
      fiberloop::sleep(0.001);
    });
    std::cout << "outer scope finished in time\n";

    // 7. A cancellation from outside is never mistaken for a timeout.
    auto worker =
        fiberloop::spawn([] { fiberloop::with_timeout(10.0, [] { fiberloop::sleep(10); }); });
    fiberloop::sleep(0.001);
    worker.cancel();
    try {
      fiberloop::await(worker);
    } catch (const fiberloop::CancelledError&) {
      std::cout << "worker was cancelled, not timed out\n";
    }
  });
}
