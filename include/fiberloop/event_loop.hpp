// event_loop.hpp: EventLoop, asyncio's loop: a ready queue and a timer heap over epoll.
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiberloop/detail/inline_function.hpp"
#include "fiberloop/detail/io_table.hpp"
#include "fiberloop/detail/ring_queue.hpp"
#include "fiberloop/detail/threadsafe_queue.hpp"
#include "fiberloop/detail/timer_queue.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/handle.hpp"
#include "fiberloop/poller.hpp"

namespace fiberloop {

template <class T>
class Task;
class AnyTask;
namespace detail {
class TaskStateBase;
class ThreadBridge;

// InvocableWithCopies<Fn, Args...>: fn can be called with the decayed copies
// a task keeps of it and its arguments (create_task, run_until_complete),
// handed over as rvalues as std::thread does. Callables that only take them
// as lvalues (a `T&` parameter without std::ref) pass this concept too, so
// that create_task can refuse them with a static_assert that says why.
template <class Fn, class... Args>
concept InvocableWithCopies = std::invocable<std::decay_t<Fn>, std::decay_t<Args>...> ||
                              std::invocable<std::decay_t<Fn>&, std::decay_t<Args>&...>;

// TaskResult<Fn, Args...> is what fn returns when a task calls it; void when
// it cannot be called (create_task's static_assert reports that instead).
template <class Fn, class... Args>
using TaskResult = typename std::conditional_t<
    std::invocable<std::decay_t<Fn>, std::decay_t<Args>...>,
    std::invoke_result<std::decay_t<Fn>, std::decay_t<Args>...>, std::type_identity<void>>::type;

}  // namespace detail

// ExceptionContext describes an error the loop could not hand to anyone: an
// exception escaping a callback, a task exception never retrieved, a slow
// callback in debug mode (then `exception` is null).
struct ExceptionContext {
  std::string message;
  std::exception_ptr exception;
  std::string task;  // the task's name, when a task is involved
};

// TaskOptions are the optional settings of create_task().
struct TaskOptions {
  std::string name{};          // empty: "Task-N"
  std::size_t stack_size = 0;  // 0: StackPool::local().default_size()
  // eager_start runs the task's first step inside create_task when the loop
  // is running (Python 3.14's create_task(eager_start=True)): a task that
  // finishes without waiting never touches the loop. Off by default, so that
  // nothing of a task runs before the loop gets to it.
  bool eager_start = false;
};

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
  using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;

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
    return Handle(schedule_soon(std::forward<Fn>(fn), std::forward<Args>(args)...));
  }

  // call_later(delay, fn, args...) runs fn(args...) once `delay` seconds have
  // passed — never earlier. Equal deadlines run in the order scheduled.
  // Throws std::invalid_argument for a NaN delay.
  template <class Fn, class... Args>
  TimerHandle call_later(double delay, Fn&& fn, Args&&... args) {
    detail::Ref<detail::HandleState> h =
        make_handle(std::forward<Fn>(fn), std::forward<Args>(args)...);
    schedule_later(h.get(), delay);
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
    std::int64_t when_ns = deadline_at(when);
    detail::Ref<detail::HandleState> h =
        make_handle(std::forward<Fn>(fn), std::forward<Args>(args)...);
    schedule_at(h.get(), when_ns);
    return TimerHandle(std::move(h));
  }

  // call_soon_threadsafe(fn) is call_soon() for other threads: it wakes the
  // loop if it sleeps. Throws RuntimeError if the loop is closed.
  void call_soon_threadsafe(detail::InlineFunction<void(), 48> fn);

  // time() is the loop's clock: monotonic seconds.
  double time() const noexcept;

  // create_future<T>() makes a pending Future<T> bound to this loop.
  template <class T = void>
  Future<T> create_future() {
    check_closed();
    return Future<T>(detail::Ref<detail::FutureStateBase>(new detail::FutureState<T>(*this)));
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

  // all_tasks() lists the tasks not yet done.
  std::vector<AnyTask> all_tasks() const;

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

  bool is_running() const noexcept { return running_; }
  bool is_closed() const noexcept { return closed_; }

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
    add_io(fd, Poller::kReadable,
           Callback(bound(std::forward<Fn>(fn), std::forward<Args>(args)...)));
  }
  // remove_reader(fd) stops watching fd for reading; false if it was not watched.
  bool remove_reader(int fd) { return remove_io(fd, Poller::kReadable); }
  // add_writer / remove_writer: the same for writability.
  template <class Fn, class... Args>
  void add_writer(int fd, Fn&& fn, Args&&... args) {
    add_io(fd, Poller::kWritable,
           Callback(bound(std::forward<Fn>(fn), std::forward<Args>(args)...)));
  }
  bool remove_writer(int fd) { return remove_io(fd, Poller::kWritable); }

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
  void wait_readable(int fd) { wait_io(fd, Poller::kReadable); }
  void wait_writable(int fd) { wait_io(fd, Poller::kWritable); }

  // forget_fd(fd) drops everything the loop holds for fd — callbacks,
  // readiness waits (their tasks get EBADF), the epoll registration. Call it
  // before closing an fd you waited on (net::Socket does): the loop keeps
  // the registration for the number, and a new file given the same number
  // would otherwise never be armed. False if fd was not watched.
  bool forget_fd(int fd) noexcept;

  // link() lets objects that register fds (Socket) check the loop is alive.
  const detail::Ref<detail::LoopLink>& link() const noexcept { return link_; }

  // set_exception_handler(fn) replaces the default handler (nullptr restores it).
  void set_exception_handler(ExceptionHandler handler) { exception_handler_ = std::move(handler); }
  const ExceptionHandler& get_exception_handler() const noexcept { return exception_handler_; }
  // call_exception_handler(ctx) reports through the handler; if the handler
  // throws, both reports go to the default handler.
  void call_exception_handler(const ExceptionContext& context) noexcept;
  // default_exception_handler(ctx) prints the report to stderr.
  static void default_exception_handler(const ExceptionContext& context) noexcept;

  // set_debug(true) reports callbacks that run longer than
  // slow_callback_duration() (default 0.1 s) through the exception handler,
  // and makes call_soon() from a foreign thread throw RuntimeError.
  void set_debug(bool enabled) noexcept {
    debug_ = enabled;
    checked_requeue_ = closed_ || debug_;
  }
  bool get_debug() const noexcept { return debug_; }
  void set_slow_callback_duration(double seconds) noexcept { slow_callback_duration_ = seconds; }
  double slow_callback_duration() const noexcept { return slow_callback_duration_; }

  // The cooperative budget (tokio's coop budget): a task that keeps
  // completing operations without waiting — stream reads, socket sends and
  // receives, accepts, datagrams, a Lock or Semaphore taken uncontended, a
  // Queue get/put that finds an item or room — yields to the loop (as
  // sleep(0) does) once it has made task_budget() of them in one step, so
  // that one busy peer cannot freeze the other tasks. 0: never yield.
  static constexpr std::size_t kDefaultTaskBudget = 128;
  void set_task_budget(std::size_t operations) noexcept { task_budget_ = operations; }
  std::size_t task_budget() const noexcept { return task_budget_; }

 private:
  friend class detail::FutureStateBase;
  friend class detail::TaskStateBase;
  friend struct detail::HandleState;
  friend class detail::ThreadBridge;
  using Callback = detail::HandleState::Callback;

  // bound(fn, args...) is fn itself (forwarded, not copied), or a callable
  // that calls fn(args...) with copies of its own.
  template <class Fn, class... Args>
  static decltype(auto) bound(Fn&& fn, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      return std::forward<Fn>(fn);
    } else {
      return [fn = std::forward<Fn>(fn), ... args = std::forward<Args>(args)]() mutable {
        std::invoke(fn, args...);
      };
    }
  }

  // make_handle(fn, args...) is a new handle whose callback, fn(args...), is
  // built in place in it.
  template <class Fn, class... Args>
  detail::Ref<detail::HandleState> make_handle(Fn&& fn, Args&&... args) {
    detail::Ref<detail::HandleState> h(new detail::HandleState(this));
    h->callback.emplace(bound(std::forward<Fn>(fn), std::forward<Args>(args)...));
    return h;
  }
  template <class Fn, class... Args>
  detail::Ref<detail::HandleState> schedule_soon(Fn&& fn, Args&&... args) {
    detail::Ref<detail::HandleState> h =
        make_handle(std::forward<Fn>(fn), std::forward<Args>(args)...);
    requeue(h.get());
    return h;
  }
  // schedule_later(h, delay) / schedule_at(h, when_ns) put the new handle h
  // in the timer queue (which takes a reference), due `delay` seconds from
  // now / at when_ns. They check as requeue() does; schedule_later throws
  // std::invalid_argument for a NaN delay.
  void schedule_later(detail::HandleState* h, double delay);
  void schedule_at(detail::HandleState* h, std::int64_t when_ns);
  // push_ready(h) appends h to the ready queue, taking a reference.
  void push_ready(detail::HandleState* h) {
    h->add_ref();
    ready_.push_back(h);
  }
  // requeue(h) is call_soon for a handle that is built or reused (a task's
  // step): the checks, then the FIFO position. The checks' common case is one
  // inline test; throwing, the debug-mode thread check and taking in
  // call_soon_threadsafe's posts (which must run first) are out of line.
  void requeue(detail::HandleState* h) {
    if (checked_requeue_ || threadsafe_.pending()) [[unlikely]] {
      requeue_slow(h);  // a tail call: the common requeue needs no frame
      return;
    }
    push_ready(h);
  }
  // requeue_step(h) is requeue() for a task's own step, which the queue
  // holds without a reference (see TaskStateBase::step_).
  void requeue_step(detail::HandleState* h) {
    if (checked_requeue_ || threadsafe_.pending()) [[unlikely]] {
      requeue_step_slow(h);  // a tail call: the common requeue needs no frame
      return;
    }
    ready_.push_back(h);
  }
  void requeue_checks();
  void requeue_slow(detail::HandleState* h);
  void requeue_step_slow(detail::HandleState* h);
  std::int64_t deadline_after(double delay) const;
  static std::int64_t deadline_at(double when);
  std::int64_t now_ns() const noexcept;
  void timer_cancelled() noexcept { ++timer_cancelled_count_; }

  void add_io(int fd, std::uint32_t kind, Callback cb);
  bool remove_io(int fd, std::uint32_t kind);
  void wait_io(int fd, std::uint32_t kind);
  void dispatch_io(const Poller::Event& event);
  void orphan_event(int fd, bool has_entry);
  void rebuild_poller();

  // iterate() is run_once()'s body, inline in run_forever(); then its phases.
  [[gnu::always_inline]] inline void iterate();
  void drop_cancelled_timers();
  std::int64_t poll_timeout_ns() const;
  void poll_io(std::int64_t timeout_ns);
  void drain_threadsafe();
  void queue_due_timers();
  [[gnu::always_inline]] inline void run_ready();
  std::size_t run_ready_prefetching(std::size_t ntodo);
  // Inline: a call to a function that only prefetches can be dropped whole,
  // as one that only reads.
  [[gnu::always_inline]] inline void prefetch_ahead() const noexcept;
  inline void run_next();
  void run_timed(detail::HandleState& h);

  void check_closed() const {
    if (closed_) [[unlikely]]
      throw_closed();
  }
  [[noreturn]] static void throw_closed();
  void check_can_run() const;
  // check_thread() throws, in debug mode, for a call from a foreign thread.
  void check_thread() const {
    if (debug_) [[unlikely]]
      check_thread_slow();
  }
  void check_thread_slow() const;
  void abandon_tasks() noexcept;
  // drop_ready() empties the ready queue without running it.
  void drop_ready() noexcept;
  void register_task(detail::TaskStateBase* t) noexcept;
  void unregister_task(detail::TaskStateBase* t) noexcept;
  class RunningScope;

  detail::RingQueue<detail::HandleState*> ready_;
  detail::TimerQueue scheduled_;
  std::size_t timer_cancelled_count_ = 0;
  std::uint64_t timer_seq_ = 0;
  bool stopping_ = false;
  bool closed_ = false;
  bool running_ = false;
  bool iterating_ = false;
  bool debug_ = false;
  // checked_requeue_ is closed_ || debug_: requeue() tests both at once.
  bool checked_requeue_ = false;
  double slow_callback_duration_ = 0.1;
  std::size_t task_budget_ = kDefaultTaskBudget;
  std::uint64_t iteration_ = 0;  // counts iterate(): a task's budget is per step
  std::thread::id thread_id_;

  Poller poller_;
  detail::IoTable io_;           // every fd the loop watches, registered in poller_
  std::uint32_t next_io_tag_ = 1;
  detail::Ref<detail::LoopLink> link_;

  detail::ThreadsafeQueue threadsafe_;          // call_soon_threadsafe()'s inbox and eventfd
  std::vector<Callback> threadsafe_batch_;  // swapped with its queue: both keep their capacity
  bool closing_ = false;                    // close() is in progress: a nested one is a no-op

  ExceptionHandler exception_handler_;
  detail::TaskStateBase* tasks_ = nullptr;  // live tasks; each holds one reference here
  // bridge_ links completers and the default executor to this loop (completer.hpp).
  std::shared_ptr<detail::ThreadBridge> bridge_;
};

// wait_readable(fd) / wait_writable(fd) are the running loop's readiness
// waits (EventLoop::wait_readable), for code inside a task.
FIBERLOOP_API void wait_readable(int fd);
FIBERLOOP_API void wait_writable(int fd);

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

namespace detail {
inline FutureStateBase::FutureStateBase(EventLoop& loop) noexcept : link_(loop.link().get()) {
  link_->add_ref();
}

inline void FutureStateBase::reset_for_reuse(EventLoop& loop) noexcept {
  assert(!first_waiter_ && !first_callback_.id && !log_traceback_);
  // (next_callback_id_ goes on: ids need only be unique per future.)
  status_ = Status::pending;
  result_taken_ = false;
  if (LoopLink* link = loop.link().get(); link != link_) [[unlikely]] {
    if (link_->release()) delete link_;
    link_ = link;
    link_->add_ref();
  }
}
}  // namespace detail

}  // namespace fiberloop

#include "fiberloop/task.hpp"
