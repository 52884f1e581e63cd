// event_loop.hpp: EventLoop, asyncio's loop: a ready queue and a timer heap over epoll.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiberloop/detail/inline_function.hpp"
#include "fiberloop/detail/io_driver.hpp"
#include "fiberloop/detail/loop_core.hpp"
#include "fiberloop/detail/task_state.hpp"
#include "fiberloop/detail/timers.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/handle.hpp"
#include "fiberloop/poller.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop {

namespace net {
class Socket;
}

namespace detail {
class ThreadBridge;
class StallWatchdog;

// LoopExtension is what a layer above the loop attaches to it and the loop
// closes with itself: the thread bridge (completers, the default executor).
class LoopExtension {
 public:
  virtual ~LoopExtension() = default;
  // close() runs in EventLoop::close(), after the tasks are unwound.
  virtual void close() noexcept = 0;
  // quiet_fds() is how many of the fds the loop waits on are this
  // extension's yet can bring nothing the program waits for (the signalfd
  // with only run()'s Ctrl-C handler on it): virtual time jumps past them.
  virtual std::size_t quiet_fds() const noexcept { return 0; }
  // holds_time() says whether work may still come through this extension
  // that no fd of the loop shows (a thread's job in flight, a child watched
  // through SIGCHLD): virtual time must not jump meanwhile.
  virtual bool holds_time() const noexcept { return false; }
};
// The extensions a loop can hold, closed in this order: the stall watchdog
// first (nothing runs to watch any more), children before the signal
// handlers their watcher may use, the thread bridge last.
enum class ExtensionSlot { watchdog, children, signals, bridge, count };
}  // namespace detail

// DumpFormat is EventLoop::dump_tasks()'s: lines for people, or one JSON
// document (docs/observability.md has its schema).
enum class DumpFormat { text, json };

// EventLoop runs callbacks, timers, I/O callbacks and tasks on one thread.
// Like asyncio's loop, it is not thread-safe: only call_soon_threadsafe() may
// be called from another thread.
//
// Example:
//   fiberloop::EventLoop loop;
//   loop.call_later(0.1, [&] { loop.stop(); });
//   loop.run_forever();
//
// Owner: not copyable, not movable. Destroying it closes it.
class FIBERLOOP_API EventLoop {
 public:
  using ExceptionHandler = detail::LoopCore::ExceptionHandler;

  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  // ~EventLoop() closes the loop (unwinding the fibers of pending tasks) and
  // detaches the futures that outlive it.
  ~EventLoop();

  // call_soon(fn, args...) runs fn(args...) on a later iteration, after the
  // callbacks already scheduled (FIFO). Throws RuntimeError if closed.
  template <class Fn, class... Args>
  Handle call_soon(Fn&& fn, Args&&... args) {
    return Handle(core_.schedule_soon(std::forward<Fn>(fn), std::forward<Args>(args)...));
  }

  // call_later(delay, fn, args...) runs fn(args...) once `delay` seconds have
  // passed — never earlier. Equal deadlines run in the order scheduled.
  // Throws std::invalid_argument for a NaN delay.
  template <class Fn, class... Args>
  TimerHandle call_later(double delay, Fn&& fn, Args&&... args) {
    detail::Ref<detail::HandleState> h =
        core_.make_handle(std::forward<Fn>(fn), std::forward<Args>(args)...);
    timers_.schedule_after(h.get(), delay);
    return TimerHandle(std::move(h));
  }
  template <class Rep, class Period, class Fn, class... Args>
  TimerHandle call_later(std::chrono::duration<Rep, Period> delay, Fn&& fn, Args&&... args) {
    return call_later(std::chrono::duration<double>(delay).count(), std::forward<Fn>(fn),
                      std::forward<Args>(args)...);
  }

  // call_at(when, fn, args...) runs fn(args...) at loop time `when` (see time()).
  template <class Fn, class... Args>
  TimerHandle call_at(double when, Fn&& fn, Args&&... args) {
    std::int64_t when_ns = detail::Timers::deadline_at(when);
    detail::Ref<detail::HandleState> h =
        core_.make_handle(std::forward<Fn>(fn), std::forward<Args>(args)...);
    timers_.schedule(h.get(), when_ns);
    return TimerHandle(std::move(h));
  }

  // call_soon_threadsafe(fn) is call_soon() for other threads: it wakes the
  // loop if it sleeps. Throws RuntimeError if the loop is closed.
  void call_soon_threadsafe(detail::InlineFunction<void(), 48> fn);

  // time() is the loop's clock in seconds: monotonic, or virtual (below).
  double time() const noexcept;

  // set_virtual_time(true) gives the loop a virtual clock, for tests (Go's
  // testing/synctest, tokio's time::pause): time() starts at 0 and, whenever
  // the loop is durably blocked, jumps to the next timer's deadline instead
  // of sleeping. Durably blocked: no callback ready, no task runnable, no
  // post from another thread pending, no executor / to_thread / Completer
  // job in flight, no child process running, no fd a callback or a task
  // waits on (the loop's own eventfd and a signalfd holding only run()'s
  // Ctrl-C handler aside; a signal handler of the program's counts). Short
  // of that, the poll waits for real, at most until the next deadline, and
  // the clock moves by the real time it waited. docs/testing.md has the
  // details. Throws RuntimeError once the loop has run, while it runs, on a
  // closed loop, or with timers scheduled (their deadlines were read off the
  // other clock).
  void set_virtual_time(bool enabled);
  bool virtual_time() const noexcept { return core_.virtual_time(); }

  // create_future<T>() makes a pending Future<T> bound to this loop.
  template <class T = void>
  Future<T> create_future() {
    core_.check_closed();
    return Future<T>(detail::Ref<detail::FutureStateBase>(new detail::FutureState<T>(core_)));
  }

  // create_task(fn, args...) runs fn(args...) as a Task on its own fiber; its
  // first step is scheduled with call_soon, so nothing of fn runs before the
  // loop gets to it. As with std::thread, fn and the arguments are copied or
  // moved in, and handed to fn as rvalues, once: a by-value move-only
  // parameter works; a non-const `T&` parameter does not compile (pass
  // std::ref(x) to share x). The loop keeps the task alive until it ends.
  // clang-format off
  template <class Fn, class... Args>
    requires detail::InvocableWithCopies<Fn, Args...>
  auto create_task(Fn&& fn, Args&&... args);
  template <class Fn, class... Args>
    requires detail::InvocableWithCopies<Fn, Args...>
  auto create_task(const TaskOptions& options, Fn&& fn, Args&&... args);
  // clang-format on

  // run_in_executor(fn, args...) runs fn(args...) on the loop's default
  // thread pool and returns a Future completed on this loop; see executor.hpp
  // (include it, or fiberloop.hpp, to call this).
  template <class Fn, class... Args>
  auto run_in_executor(Fn&& fn, Args&&... args);

  // all_tasks() lists the tasks not yet done, oldest first.
  std::vector<AnyTask> all_tasks() const;

  // dump_tasks(out, format) writes every live task, oldest first: its number
  // and name, state (running / ready / waiting / done), what it waits on
  // and since when, the line of the wait, the tasks awaiting it, its
  // TaskGroup parent and its stack (the parked fiber's, walked in place);
  // then the cycles of tasks awaiting each other. Nothing of the tasks runs
  // meanwhile, and nothing is allocated per task but the output's own
  // growth. From the loop's thread only (RuntimeError otherwise); from a
  // task, that task is the one "running". See docs/observability.md.
  void dump_tasks(std::ostream& out, DumpFormat format = DumpFormat::text);
  // enable_dump_on_signal(sig, path, format) makes signal sig write the dump
  // (to stderr, or appended to the file at path) from the loop's thread,
  // while the program goes on: Go's SIGQUIT dump, without the exit. It is
  // a signal handler (add_signal_handler()): the same rules and errors.
  void enable_dump_on_signal(int sig, std::string path = {},
                             DumpFormat format = DumpFormat::text);

  // run_forever() runs until stop() is called. Throws RuntimeError if the
  // loop is closed or already running, or another loop runs on this thread.
  void run_forever();

  // run_until_complete(future) runs until the future is done and returns its
  // result (rethrowing its exception). Throws RuntimeError("Event loop
  // stopped before Future completed.") if stop() came first.
  template <class T>
  T run_until_complete(Future<T> future);

  // run_until_complete(fn, args...) runs fn(args...) as a task to completion.
  // clang-format off
  template <class Fn, class... Args>
    requires detail::InvocableWithCopies<Fn, Args...>
  auto run_until_complete(Fn&& fn, Args&&... args) {
    // clang-format on
    check_can_run();  // a refused call must not leave a task behind
    return run_until_complete(create_task(std::forward<Fn>(fn), std::forward<Args>(args)...));
  }

  // stop() ends run_forever() after the current iteration; called before it
  // runs, the next run_forever() makes one iteration.
  void stop() noexcept { stopping_ = true; }

  // close() unwinds the fibers of tasks still pending (reporting each as
  // "Task was destroyed but it is pending!"), drops every scheduled callback
  // and refuses new ones. Idempotent; a close() called while one is in
  // progress (from an exception handler) returns at once. Throws
  // RuntimeError while running.
  void close();

  bool is_running() const noexcept { return core_.running(); }
  bool is_closed() const noexcept { return core_.closed(); }

  // run_once() is one iteration, as asyncio's _run_once: drop cancelled
  // timers when they are many; poll (timeout 0 if callbacks are ready, else
  // until the earliest timer, else forever); queue I/O callbacks and due
  // timers; run exactly the callbacks that were ready when this step began.
  // Callable on its own (it is then the running loop for one iteration).
  // Throws RuntimeError from inside a callback (iterations do not nest), on
  // a closed loop, or while another loop runs on this thread.
  void run_once();

  // add_reader(fd, fn, args...) calls fn(args...) whenever fd is readable,
  // replacing an earlier reader of fd. Throws std::system_error (epoll_ctl)
  // for an fd epoll cannot watch (checked before the loop records anything),
  // std::invalid_argument for a negative fd, RuntimeError for an fd in use by
  // wait_readable/wait_writable. Remove readers and writers before closing
  // an fd: a registration outlives the number if a dup keeps the file open.
  template <class Fn, class... Args>
  void add_reader(int fd, Fn&& fn, Args&&... args) {
    io_.add_callback(fd, Poller::kReadable,
                     Callback(detail::LoopCore::bound(std::forward<Fn>(fn),
                                                      std::forward<Args>(args)...)));
  }
  // remove_reader(fd) stops watching fd for reading; false if it was not watched.
  bool remove_reader(int fd) { return io_.remove_callback(fd, Poller::kReadable); }
  // add_writer / remove_writer: the same for writability.
  template <class Fn, class... Args>
  void add_writer(int fd, Fn&& fn, Args&&... args) {
    io_.add_callback(fd, Poller::kWritable,
                     Callback(detail::LoopCore::bound(std::forward<Fn>(fn),
                                                      std::forward<Args>(args)...)));
  }
  bool remove_writer(int fd) { return io_.remove_callback(fd, Poller::kWritable); }

  // wait_readable(fd) suspends the running task until fd is readable (or
  // has an error or hang-up); wait_writable(fd) the same for writability.
  // The first wait registers fd with epoll, edge-triggered, and it stays
  // registered until forget_fd(fd): no epoll_ctl per wait. Readiness that
  // arrives while nobody waits is kept for the next wait, which then returns
  // at once; one readiness report may cover data already consumed, so
  // retry the operation and wait again on EAGAIN. After a hang-up or error
  // report, waits in that direction return at once while the kernel (one
  // poll(2) per such wait) says the state holds: for good after a TCP
  // hang-up, until a receive or send has reported it for a datagram
  // socket's error (EPOLLERR). One task at a time may wait per direction.
  // Throws RuntimeError outside a task, for a second waiter, or for an fd
  // that has add_reader/add_writer callbacks; std::system_error (epoll_ctl)
  // for an fd epoll cannot watch; CancelledError if the task is cancelled;
  // std::system_error(EBADF) if forget_fd(fd) is called while it waits.
  void wait_readable(int fd, std::source_location where = std::source_location::current()) {
    wait_io(fd, Poller::kReadable, where);
  }
  void wait_writable(int fd, std::source_location where = std::source_location::current()) {
    wait_io(fd, Poller::kWritable, where);
  }

  // forget_fd(fd) drops everything the loop holds for fd — callbacks,
  // readiness waits (their tasks get EBADF), the epoll registration. Call it
  // before closing an fd you waited on (net::Socket does): the loop keeps
  // the registration for the number, and a new file given the same number
  // would otherwise never be armed. False if fd was not watched.
  bool forget_fd(int fd) noexcept { return io_.forget(fd); }

  // link() lets objects that register fds (Socket) check the loop is alive.
  const detail::Ref<detail::LoopLink>& link() const noexcept { return core_.link(); }
  // core() is what the layers below the loop schedule through.
  detail::LoopCore& core() noexcept { return core_; }
  // extension(slot) is what a layer above attached (null until it did).
  std::shared_ptr<detail::LoopExtension>& extension(detail::ExtensionSlot slot) noexcept {
    return extensions_[static_cast<std::size_t>(slot)];
  }

  // add_signal_handler(sig, fn, args...) runs fn(args...) as an ordinary
  // callback each time signal sig arrives; remove_signal_handler(sig) says
  // whether one was set. See signals.hpp (include it, or fiberloop.hpp).
  template <class Fn, class... Args>
  void add_signal_handler(int sig, Fn&& fn, Args&&... args);
  bool remove_signal_handler(int sig);

  // set_exception_handler(fn) replaces the default handler (nullptr restores it).
  void set_exception_handler(ExceptionHandler handler) {
    core_.set_exception_handler(std::move(handler));
  }
  const ExceptionHandler& get_exception_handler() const noexcept {
    return core_.exception_handler();
  }
  // call_exception_handler(ctx) reports through the handler; if the handler
  // throws, both reports go to the default handler.
  void call_exception_handler(const ExceptionContext& context) noexcept {
    core_.call_exception_handler(context);
  }
  // default_exception_handler(ctx) prints the report to stderr.
  static void default_exception_handler(const ExceptionContext& context) noexcept {
    detail::LoopCore::default_exception_handler(context);
  }

  // set_debug(true) reports callbacks that run longer than
  // slow_callback_duration() (default 0.1 s) through the exception handler,
  // makes call_soon() from a foreign thread throw RuntimeError, and turns
  // the stall watchdog on at 0.1 s unless set_stall_threshold() was called
  // (a watchdog that cannot start is reported through the handler).
  void set_debug(bool enabled) noexcept;
  bool get_debug() const noexcept { return core_.debug(); }
  void set_slow_callback_duration(double seconds) noexcept { slow_callback_duration_ = seconds; }
  double slow_callback_duration() const noexcept { return slow_callback_duration_; }

  // set_stall_threshold(seconds) starts the stall watchdog (0, the default,
  // stops it): a monitor thread that sees, while it happens, one callback
  // or task step hold the loop's thread longer than `seconds` (the poll
  // waiting for I/O or timers is no stall). At detection it writes to
  // stderr what stalls (the task's name, or "a callback"), for how long so
  // far, and the loop thread's backtrace, taken by signal SIGRTMIN+5: the
  // program must not use that signal while a watchdog runs. When the stall
  // ends, the exception handler is told once ("Executing <Task 'name'
  // step> took N seconds; it stalled the loop..." with that backtrace, and
  // the task's name in `task`); it replaces debug mode's slow-callback
  // report for that run. Throws std::invalid_argument for a negative or NaN
  // threshold, RuntimeError on a closed loop, std::system_error if the
  // monitor cannot start. See docs/observability.md.
  void set_stall_threshold(double seconds);
  // stall_threshold() is the watchdog's threshold in seconds (0: off).
  double stall_threshold() const noexcept {
    return stall_threshold_set_ ? stall_threshold_ : (core_.debug() ? kDebugStallThreshold : 0.0);
  }
  static constexpr double kDebugStallThreshold = 0.1;

  // The cooperative budget (tokio's coop budget): a task that keeps
  // completing operations without waiting — stream reads, socket sends and
  // receives, accepts, datagrams, a Lock or Semaphore taken uncontended, a
  // Queue get/put that finds an item or room — yields to the loop (as
  // sleep(0) does) once it has made task_budget() of them in one step, so
  // that one busy peer cannot freeze the other tasks. 0: never yield.
  static constexpr std::size_t kDefaultTaskBudget = detail::LoopCore::kDefaultTaskBudget;
  void set_task_budget(std::size_t operations) noexcept { core_.set_task_budget(operations); }
  std::size_t task_budget() const noexcept { return core_.task_budget(); }

 private:
  using Callback = detail::HandleState::Callback;

  // the readiness waits (io_wait.cpp); a Socket passes its registration.
  friend class net::Socket;
  void wait_io(int fd, std::uint32_t kind, std::source_location where,
               detail::IoRegistration* reg = nullptr);
  void set_signal_handler(int sig, Callback handler);  // lib/signals/

  // iterate() is run_once()'s body, inline in run_forever(); then its phases.
  [[gnu::always_inline]] inline void iterate();
  std::int64_t poll_timeout_ns() const;
  // poll_virtual() is the poll phase in virtual time (virtual_time.cpp).
  void poll_virtual();
  bool durably_blocked();
  [[gnu::always_inline]] inline void run_ready();
  std::size_t run_ready_prefetching(std::size_t ntodo);
  // Inline: a call to a function that only prefetches can be dropped whole,
  // as one that only reads.
  [[gnu::always_inline]] inline void prefetch_ahead() const noexcept;
  inline void run_next();
  void run_timed(detail::HandleState& h);
  void report_stall(const std::string& stepped, double took, const std::string& backtrace);
  void apply_stall_threshold();

  void check_can_run() const;
  void abandon_tasks() noexcept;
  class RunningScope;

  // core_ first: what the hot paths reach from a handle's or a future's
  // pointer to it is at offset zero; and the phases below use it to the end.
  detail::LoopCore core_;
  detail::Timers timers_{core_};
  detail::IoDriver io_{core_};
  bool stopping_ = false;
  bool iterating_ = false;
  bool closing_ = false;  // close() is in progress: a nested one is a no-op
  double slow_callback_duration_ = 0.1;
  double stall_threshold_ = 0.0;
  bool stall_threshold_set_ = false;  // set_debug() leaves an explicit threshold alone
  // watchdog_ is the watchdog in extension(ExtensionSlot::watchdog) while
  // it watches, else null: run_timed() reads it once per run.
  detail::StallWatchdog* watchdog_ = nullptr;
  // What layers above attached: the thread bridge (completers and the
  // default executor, completer.hpp), signal handlers, the child watcher.
  std::shared_ptr<detail::LoopExtension>
      extensions_[static_cast<std::size_t>(detail::ExtensionSlot::count)];
};

// get_running_loop() is the loop running on this thread. Throws RuntimeError
// ("no running event loop") when there is none.
FIBERLOOP_API EventLoop& get_running_loop();

namespace detail {
// check_no_running_loop(who) throws RuntimeError naming `who` when a loop
// runs on this thread (fiberloop::run() makes its own).
FIBERLOOP_API void check_no_running_loop(const char* who);
}  // namespace detail

// wait_readable(fd) / wait_writable(fd) are the running loop's readiness
// waits (EventLoop::wait_readable), for code inside a task.
FIBERLOOP_API void wait_readable(int fd,
                                 std::source_location where = std::source_location::current());
FIBERLOOP_API void wait_writable(int fd,
                                 std::source_location where = std::source_location::current());

template <class T>
T EventLoop::run_until_complete(Future<T> future) {
  check_can_run();  // before the done-callback: a refused call must not stop the loop later
  if (&future.get_loop() != this)
    throw RuntimeError("run_until_complete(): the future belongs to another loop");
  CallbackId stop_on_done = future.add_done_callback([this](const Future<T>&) { stop(); });
  try {
    run_forever();
  } catch (...) {
    future.remove_done_callback(stop_on_done);
    throw;
  }
  future.remove_done_callback(stop_on_done);
  if (!future.done()) throw RuntimeError("Event loop stopped before Future completed.");
  return take_result(future);
}

// clang-format off
template <class Fn, class... Args>
  requires detail::InvocableWithCopies<Fn, Args...>
auto EventLoop::create_task(Fn&& fn, Args&&... args) {
  // clang-format on
  static const TaskOptions defaults;
  return create_task(defaults, std::forward<Fn>(fn), std::forward<Args>(args)...);
}

// clang-format off
template <class Fn, class... Args>
  requires detail::InvocableWithCopies<Fn, Args...>
auto EventLoop::create_task(const TaskOptions& options, Fn&& fn, Args&&... args) {
  // clang-format on
  constexpr bool kTakesRvalues = std::invocable<std::decay_t<Fn>, std::decay_t<Args>...>;
  static_assert(kTakesRvalues,
                "create_task/spawn/run: the task's function cannot take its arguments as "
                "rvalues. The task keeps copies of them and moves them into the call, as "
                "std::thread does: a non-const T& parameter needs std::ref(x) to share x.");
  using R = detail::TaskResult<Fn, Args...>;
  static_assert(!std::is_reference_v<R>, "a task returns a value, not a reference");
  if constexpr (!kTakesRvalues) {
    return Task<R>();  // unreachable: only the static_assert above is reported
  } else {
    core_.check_closed();
    // Called once: the copies are moved into fn, as std::thread's are.
    auto call = [fn = std::forward<Fn>(fn), ... args = std::forward<Args>(args)]() mutable -> R {
      return std::invoke(std::move(fn), std::move(args)...);
    };
    auto* state = detail::TaskState<R, decltype(call)>::make(core_, options, std::move(call));
    Task<R> task{detail::Ref<detail::FutureStateBase>(state)};
    state->start();  // with a handle held: an eager task may finish right here
    return task;
  }
}

}  // namespace fiberloop
