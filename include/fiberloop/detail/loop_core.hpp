// detail/loop_core.hpp: what futures, tasks and handles need from a loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fiberloop/detail/assert.hpp"
#include "fiberloop/detail/inline_function.hpp"
#include "fiberloop/detail/loop_link.hpp"
#include "fiberloop/detail/ref.hpp"
#include "fiberloop/detail/ring_queue.hpp"
#include "fiberloop/detail/threadsafe_queue.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/handle.hpp"

namespace fiberloop {

class EventLoop;

// ExceptionContext describes an error the loop could not hand to anyone: an
// exception escaping a callback, a task exception never retrieved, a slow
// callback in debug mode (then `exception` is null).
struct ExceptionContext {
  std::string message;
  std::exception_ptr exception;
  std::string task;  // the task's name, when a task is involved
};

namespace detail {

// LiveTask is a task's place in its loop's list of live tasks. The list is
// the core's; what a task is, it does not know (the event loop, above the
// task layer, turns an entry back into its task).
struct LiveTask {
  LiveTask* prev_live = nullptr;
  LiveTask* next_live = nullptr;
};

// LoopCore is the part of an event loop the layers below it schedule
// through, as asyncio's events.py is for its futures and tasks, and tokio's
// `Schedule` + `OwnedTasks` for its tasks: the ready queue (with the inbox of
// posts from other threads, which must join it first), the checks a
// scheduling call makes, error reporting, the live-task list, the
// cooperative budget's clock and the loop's clock (real or virtual). The
// phases that fill the queue (timers, the I/O driver) and the loop that runs
// it sit above. One per EventLoop.
class FIBERLOOP_API LoopCore {
 public:
  using Callback = HandleState::Callback;
  using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;

  explicit LoopCore(EventLoop& owner);
  // ~LoopCore() detaches the futures and sockets that outlive the loop.
  ~LoopCore();
  LoopCore(const LoopCore&) = delete;
  LoopCore& operator=(const LoopCore&) = delete;

  EventLoop& owner() const noexcept { return *owner_; }
  // link() lets objects that may outlive the loop check it is alive.
  const Ref<LoopLink>& link() const noexcept { return link_; }

  // --- the ready queue -----------------------------------------------------
  // schedule_soon(fn, args...) is call_soon: a new handle, queued in FIFO order.
  template <class Fn, class... Args>
  Ref<HandleState> schedule_soon(Fn&& fn, Args&&... args) {
    Ref<HandleState> h = make_handle(std::forward<Fn>(fn), std::forward<Args>(args)...);
    requeue(h.get());
    return h;
  }
  // make_handle(fn, args...) is a new handle whose callback, fn(args...), is
  // built in place in it.
  template <class Fn, class... Args>
  Ref<HandleState> make_handle(Fn&& fn, Args&&... args) {
    Ref<HandleState> h(new HandleState(this));
    h->callback.emplace(bound(std::forward<Fn>(fn), std::forward<Args>(args)...));
    return h;
  }
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
  // push_ready(h) appends h to the ready queue, taking a reference.
  void push_ready(HandleState* h) {
    FIBERLOOP_ASSERT(!h->is_task_step(), "a task's step is queued by requeue_step()");
    h->add_ref();
    ready_.push_back(h);
  }
  // push_ready_adopted(h) appends h, whose reference the queue takes over.
  void push_ready_adopted(HandleState* h) { ready_.push_back(h); }
  // requeue(h) is call_soon for a handle that is built or reused: the
  // checks, then the FIFO position. The checks' common case is one inline
  // test; throwing, the debug-mode thread check and taking in posts from
  // other threads (which must run first) are out of line.
  void requeue(HandleState* h) {
    if (checked_requeue_ || inbox_->pending()) [[unlikely]] {
      requeue_slow(h);  // a tail call: the common requeue needs no frame
      return;
    }
    push_ready(h);
  }
  // requeue_step(h) is requeue() for a task's own step, which the queue
  // holds without a reference: a queued step is a pending task's, and the
  // live-task list holds the task until it ends.
  void requeue_step(HandleState* h) {
    FIBERLOOP_ASSERT(h->is_task_step(), "requeue_step() of a handle that is no task's step");
    if (checked_requeue_ || inbox_->pending()) [[unlikely]] {
      requeue_step_slow(h);
      return;
    }
    ready_.push_back(h);
  }
  RingQueue<HandleState*>& ready() noexcept { return ready_; }
  const RingQueue<HandleState*>& ready() const noexcept { return ready_; }
  // drop_ready() empties the ready queue without running it.
  void drop_ready() noexcept;

  // --- posts from other threads --------------------------------------------
  // inbox() is the queue other threads post to. Shared: whoever may post
  // after the loop is gone (the thread bridge) holds it, and finds it closed.
  const std::shared_ptr<ThreadsafeQueue>& inbox() const noexcept { return inbox_; }
  // post(fn), from any thread, queues fn for the loop and wakes its poll.
  void post(Callback fn) { inbox_->post(std::move(fn)); }
  bool posts_pending() const noexcept { return inbox_->pending(); }
  // take_posts() moves the posts into the ready queue, in post order.
  void take_posts();
  int inbox_fd() const noexcept { return inbox_->fd(); }
  void clear_inbox_wakeup() noexcept { inbox_->clear_wakeup(); }

  // --- state and the checks of a scheduling call ---------------------------
  bool closed() const noexcept { return closed_; }
  bool running() const noexcept { return running_; }
  bool debug() const noexcept { return debug_; }
  void set_debug(bool enabled) noexcept {
    debug_ = enabled;
    checked_requeue_ = closed_ || debug_;
    instrumented_ = debug_ || watched_;
  }
  // instrumented() is debug() or a stall watchdog watching: the one test the
  // ready queue's dispatch makes before it times a run (EventLoop::run_timed).
  bool instrumented() const noexcept { return instrumented_; }
  void set_watched(bool watched) noexcept {
    watched_ = watched;
    instrumented_ = debug_ || watched_;
  }
  // thread_id() is the thread running the loop, or that last ran it, or
  // (never run) that created it: the loop's thread.
  std::thread::id thread_id() const noexcept { return thread_id_; }
  // set_running(on) marks the loop as running on this thread, or not.
  void set_running(bool on) noexcept;
  // mark_closed() refuses new callbacks from now on and closes the inbox.
  void mark_closed() noexcept;
  void check_closed() const {
    if (closed_) [[unlikely]]
      throw_closed();
  }
  // check_scheduling() is check_closed() and check_thread() in one test.
  void check_scheduling() const {
    if (checked_requeue_) [[unlikely]] {
      check_closed();
      check_thread_slow();
    }
  }
  [[noreturn]] static void throw_closed();
  // check_thread() throws, in debug mode, for a call from a foreign thread.
  void check_thread() const {
    if (debug_) [[unlikely]]
      check_thread_slow();
  }

  // --- error reports -------------------------------------------------------
  void set_exception_handler(ExceptionHandler handler) { exception_handler_ = std::move(handler); }
  const ExceptionHandler& exception_handler() const noexcept { return exception_handler_; }
  // call_exception_handler(ctx) reports through the handler; if the handler
  // throws, both reports go to the default handler.
  void call_exception_handler(const ExceptionContext& context) noexcept;
  // default_exception_handler(ctx) prints the report to stderr.
  static void default_exception_handler(const ExceptionContext& context) noexcept;
  // report(ctx) is call_exception_handler on `core`, or the default handler
  // once the loop is gone (null).
  static void report(LoopCore* core, const ExceptionContext& context) noexcept;

  // --- the live tasks ------------------------------------------------------
  void add_live(LiveTask* t) noexcept {
    FIBERLOOP_ASSERT(!t->prev_live && !t->next_live && live_ != t, "a task listed twice");
    t->next_live = live_;
    if (live_) live_->prev_live = t;
    live_ = t;
  }
  // remove_live(t) takes t off the list; false if it was not on it.
  bool remove_live(LiveTask* t) noexcept {
    if (t->prev_live) {
      t->prev_live->next_live = t->next_live;
    } else if (live_ == t) {
      live_ = t->next_live;
    } else {
      return false;
    }
    if (t->next_live) t->next_live->prev_live = t->prev_live;
    t->prev_live = t->next_live = nullptr;
    return true;
  }
  LiveTask* first_live() const noexcept { return live_; }

  // --- the cooperative budget and the timers' bookkeeping -------------------
  // iteration() counts loop iterations: a task's budget is per step, and a
  // task steps at most once per iteration.
  std::uint64_t iteration() const noexcept { return iteration_; }
  void next_iteration() noexcept { ++iteration_; }
  // iteration_ns() is the loop's clock as read once this iteration, right
  // after the poll returned: what the due timers were measured against, for
  // whoever needs "now" to the iteration rather than to the nanosecond.
  std::int64_t iteration_ns() const noexcept { return iteration_ns_; }
  void stamp_iteration() noexcept { iteration_ns_ = now_ns(); }

  // --- the clock -----------------------------------------------------------
  // now_ns() is the loop's clock in nanoseconds: CLOCK_MONOTONIC, or in
  // virtual time (EventLoop::set_virtual_time) a counter from 0 that only
  // the loop moves. Real time pays one predicted branch for the choice.
  std::int64_t now_ns() const noexcept {
    if (virtual_time_) [[unlikely]]
      return virtual_ns_;
    return real_now_ns();
  }
  // real_now_ns() is CLOCK_MONOTONIC whatever the loop's mode: what a
  // duration of real work (a slow callback) is measured with.
  static std::int64_t real_now_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }
  bool virtual_time() const noexcept { return virtual_time_; }
  // set_virtual_time(on) switches clocks, the virtual one starting at 0.
  // The event loop checks that nothing has read the old clock yet.
  void set_virtual_time(bool on) noexcept {
    virtual_time_ = on;
    virtual_ns_ = 0;
    iteration_ns_ = 0;
  }
  // advance_virtual(to_ns) moves the virtual clock forward to to_ns; it
  // never goes back.
  void advance_virtual(std::int64_t to_ns) noexcept {
    if (to_ns > virtual_ns_) virtual_ns_ = to_ns;
  }
  std::size_t task_budget() const noexcept { return task_budget_; }
  void set_task_budget(std::size_t operations) noexcept { task_budget_ = operations; }
  static constexpr std::size_t kDefaultTaskBudget = 128;
  // A timer handle cancelled while in the heap counts here: the timers drop
  // cancelled ones in bulk once they are many (asyncio's rule).
  void note_timer_cancelled() noexcept { ++cancelled_timers_; }
  std::size_t& cancelled_timers() noexcept { return cancelled_timers_; }

 private:
  void requeue_checks();
  void requeue_slow(HandleState* h);
  void requeue_step_slow(HandleState* h);
  void check_thread_slow() const;

  // ready_ first: the hot paths reach it from a handle's or a future's
  // pointer to the core with no offset to add.
  RingQueue<HandleState*> ready_;
  bool closed_ = false;
  bool running_ = false;
  bool debug_ = false;
  // checked_requeue_ is closed_ || debug_: requeue() tests both at once.
  bool checked_requeue_ = false;
  bool virtual_time_ = false;
  bool watched_ = false;       // a stall watchdog watches the runs
  bool instrumented_ = false;  // debug_ || watched_
  std::size_t task_budget_ = kDefaultTaskBudget;
  std::uint64_t iteration_ = 0;
  std::int64_t iteration_ns_ = 0;
  std::int64_t virtual_ns_ = 0;
  std::size_t cancelled_timers_ = 0;
  LiveTask* live_ = nullptr;  // each listed task holds one reference to itself
  EventLoop* owner_;
  std::thread::id thread_id_ = std::this_thread::get_id();  // the creator's until it runs
  Ref<LoopLink> link_;
  // call_soon_threadsafe()'s posts and eventfd; never null.
  std::shared_ptr<ThreadsafeQueue> inbox_ = std::make_shared<ThreadsafeQueue>();
  std::vector<Callback> posts_batch_;  // swapped with the inbox: both keep their capacity
  ExceptionHandler exception_handler_;
};

}  // namespace detail
}  // namespace fiberloop
