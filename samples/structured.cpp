// structured: a TaskGroup where one child fails. The failure cancels its
// siblings and the body of the group; the group waits for all of them and
// throws an ExceptionGroup with the failure. The delays are far apart, so
// the order of events is the same on every run.
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <stdexcept>
#include <string>

namespace {

// fetch(name, delay, fail) works for `delay` seconds, then fails if told to.
void fetch(const std::string& name, double delay, bool fail) {
  std::cout << name << ": started\n";
  try {
    fiberloop::sleep(delay);
  } catch (const fiberloop::CancelledError&) {
    std::cout << name << ": cancelled, cleaning up\n";
    throw;  // a cancelled task should end cancelled
  }
  if (fail) {
    std::cout << name << ": fails\n";
    throw std::runtime_error(name + " could not connect");
  }
  std::cout << name << ": done\n";
}

}  // namespace

int main() {
  fiberloop::run([] {
    try {
      fiberloop::task_group([](fiberloop::TaskGroup& group) {
        group.spawn(fetch, std::string("a"), 0.01, false);
        group.spawn(fetch, std::string("b"), 0.1, true);
        group.spawn(fetch, std::string("c"), 10.0, false);
        std::cout << "body: waiting\n";
        try {
          fiberloop::sleep(10);
        } catch (const fiberloop::CancelledError&) {
          std::cout << "body: cancelled by the group\n";
          throw;
        }
      });
    } catch (const fiberloop::ExceptionGroup& group) {
      std::cout << "caught: " << group.what() << "\n";
      for (const auto& e : group.exceptions()) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& error) {
          std::cout << "  - " << error.what() << "\n";
        }
      }
    }
    // The group took its cancellation of this task back: it goes on.
    fiberloop::sleep(0);
    std::cout << "main: carries on\n";
  });
}
