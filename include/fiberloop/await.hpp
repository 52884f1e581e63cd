// await.hpp: the blocking-style entry points — await, sleep, spawn, run.
#pragma once

#include <chrono>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>

#include "fiberloop/event_loop.hpp"
#include "fiberloop/signals.hpp"
#include "fiberloop/task_dump.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop {

// current_task() is the task running now, or nullopt outside any task.
FIBERLOOP_API std::optional<AnyTask> current_task();

namespace detail {
// await_as(fut, what, where) is await() for the library's own waits: `what`
// names the call in errors and the task dump ("Lock.acquire()").
template <class T>
[[gnu::always_inline]] inline T await_as(const Future<T>& fut, const char* what,
                                         std::source_location where) {
  if (fut.done()) {
    detail::require_task(what);  // the same error whether done or not
  } else {
    detail::suspend_task(fut.state_ptr(), what, where);
  }
  return take_result(fut);
}
}  // namespace detail

// await(fut) waits for fut inside a task and returns its result (rethrowing
// its exception, or CancelledError if it or the task was cancelled). A done
// future returns at once, without a switch. Throws RuntimeError outside a task.
//
// Example:
//   auto fut = loop.create_future<int>();
//   loop.call_later(0.5, [fut] { fut.set_result(7); });
//   int v = fiberloop::await(fut);  // inside a task: 7, half a second later
// (Forced inline: its out-of-line copy costs more than its body;
// docs/performance.md, "Costs behind the shape of the code".)
//
// `where` is the caller's line, for the task dump (EventLoop::dump_tasks).
template <class T>
[[gnu::always_inline]] inline T await(const Future<T>& fut,
                                      std::source_location where = std::source_location::current()) {
  return detail::await_as(fut, "await()", where);
}


// sleep(seconds) suspends the running task for that long (never less);
// sleep(0) or less yields to the loop for one iteration.
FIBERLOOP_API void sleep(double seconds, std::source_location where = std::source_location::current());
template <class Rep, class Period>
void sleep(std::chrono::duration<Rep, Period> duration,
           std::source_location where = std::source_location::current()) {
  sleep(std::chrono::duration<double>(duration).count(), where);
}

// spawn(fn, args...) is get_running_loop().create_task(fn, args...): the
// arguments reach fn as std::thread's do (moved in; std::ref to share).
template <class Fn, class... Args>
auto spawn(Fn&& fn, Args&&... args) {
  return get_running_loop().create_task(std::forward<Fn>(fn), std::forward<Args>(args)...);
}

namespace detail {
// finish_run() is asyncio.run's epilogue: cancel the tasks left, let them
// finish, report their errors, close the loop.
FIBERLOOP_API void finish_run(EventLoop& loop) noexcept;
}  // namespace detail

// RunOptions are what run(options, fn, args...) sets on its new loop
// before the main task is made: virtual_time (EventLoop::set_virtual_time,
// for tests) and debug (EventLoop::set_debug), both off by default.
struct RunOptions {
  bool virtual_time = false;
  bool debug = false;
};

// run(fn, args...) is asyncio.run: a new loop runs fn(args...) as the main
// task and returns its result (or rethrows); the tasks still pending then are
// cancelled and waited for, and the loop is closed. Throws RuntimeError when
// called while a loop runs on this thread. run(options, fn, args...) is the
// same on a loop set up as `options` says (asyncio.run's debug=).
//
// Ctrl-C (asyncio.run's, 3.11+): the first SIGINT cancels the main task, so
// its stack and every other task's unwind (RAII runs); run() then throws
// KeyboardInterrupt, unless the main task caught the cancellation and
// returned. A second SIGINT during that shutdown ends the process at once
// (SIGINT's default action). This holds when SIGINT has its default
// disposition and no other loop handles it; a SIGINT handler the program
// adds (EventLoop::add_signal_handler) replaces it. See signals.hpp.
template <class Fn, class... Args>
auto run(const RunOptions& options, Fn&& fn, Args&&... args) {
  detail::check_no_running_loop("fiberloop::run()");
  EventLoop loop;
  detail::enable_dump_from_environment(loop);
  loop.set_virtual_time(options.virtual_time);
  loop.set_debug(options.debug);
  auto main = loop.create_task(std::forward<Fn>(fn), std::forward<Args>(args)...);
  detail::CtrlC ctrl_c(loop, main);
  using R = detail::TaskResult<Fn, Args...>;
  try {
    if constexpr (std::is_void_v<R>) {
      loop.run_until_complete(main);
      detail::finish_run(loop);
    } else {
      R result = loop.run_until_complete(main);
      detail::finish_run(loop);
      return result;
    }
  } catch (const CancelledError&) {
    bool interrupt = ctrl_c.interrupted() && main.cancelled() && main.uncancel() == 0;
    detail::finish_run(loop);
    if (interrupt) throw KeyboardInterrupt();
    throw;
  } catch (...) {
    detail::finish_run(loop);
    throw;
  }
}

// clang-format off
template <class Fn, class... Args>
  requires(!std::is_same_v<std::remove_cvref_t<Fn>, RunOptions>)
auto run(Fn&& fn, Args&&... args) {
  // clang-format on
  return run(RunOptions{}, std::forward<Fn>(fn), std::forward<Args>(args)...);
}

}  // namespace fiberloop
