#include "fiberloop/await.hpp"

#include <cmath>

namespace fiberloop {

std::optional<AnyTask> current_task() {
  if (auto* t = detail::running_task()) return AnyTask(t);
  return std::nullopt;
}

namespace {
// sleep_on_timer(seconds) is sleep() for a positive duration; apart, so
// that sleep(0)'s path stays a few instructions.
[[gnu::noinline]] void sleep_on_timer(double seconds, std::source_location where) {
  detail::die_if_unwinding("sleep()");  // before get_running_loop() can say "no running loop"
  // In a generator driven from plain code, name that rule rather than the loop.
  if (detail::Fiber::current()) detail::require_task("sleep()");
  EventLoop& loop = get_running_loop();
  Future<void> done = loop.create_future<void>();
  TimerHandle timer = loop.call_later(seconds, [done] {
    if (!done.done()) done.set_result();
  });
  struct CancelTimer {
    TimerHandle& timer;
    ~CancelTimer() { timer.cancel(); }
  } cancel_timer{timer};
  detail::TaskStateBase::set_wait_arg(timer.when_ns());
  detail::await_as(done, "sleep()", where);
}
}  // namespace

void sleep(double seconds, std::source_location where) {
  if (seconds > 0) {
    sleep_on_timer(seconds, where);
    return;
  }
  // Zero, negative or NaN (which call_later would reject): yield instead.
  if (std::isnan(seconds)) throw std::invalid_argument("sleep(): the duration is NaN");
  // Checks the rules (a task, no unwinding) and names sleep() if broken.
  detail::suspend_task(nullptr, "sleep()", where);
}

namespace detail {

void finish_run(EventLoop& loop) noexcept {
  try {
    std::vector<AnyTask> left = loop.all_tasks();
    for (AnyTask& t : left) t.cancel();
    auto pending = [&] {
      for (AnyTask& t : left) {
        if (!t.done()) return true;
      }
      return false;
    };
    while (pending()) loop.run_once();
    for (AnyTask& t : left) {
      if (t.cancelled()) continue;
      if (std::exception_ptr e = t.exception()) {
        loop.call_exception_handler(
            {"unhandled exception during fiberloop::run() shutdown", e, t.get_name()});
      }
    }
  } catch (...) {
    loop.call_exception_handler(
        {"error while shutting down fiberloop::run()", std::current_exception(), {}});
  }
  loop.close();
}

}  // namespace detail
}  // namespace fiberloop
