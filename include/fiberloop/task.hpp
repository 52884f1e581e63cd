// task.hpp: Task<T>, a Future<T> driven by a function running on its own fiber.
#pragma once

#include <cassert>
#include <cstddef>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "fiberloop/detail/stack_placement.hpp"
#include "fiberloop/detail/stack_spares.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/generator.hpp"

namespace fiberloop {
namespace detail {

// die_if_unwinding(what) aborts with fiberloop's message when a wait (`what`)
// is attempted from a fiber being unwound: FiberUnwind was swallowed, or a
// destructor waits during close(). No wait could ever complete there.
FIBERLOOP_API void die_if_unwinding(const char* what) noexcept;

// TaskStateBase is the untyped part of a task: asyncio's Task.__step and
// __wakeup, over a fiber that runs the function and parks at each await.
//
// Invariant (asyncio's): either fut_waiter_ is null and a step() is scheduled,
// or fut_waiter_ is set and step() is not — until the task is done.
class FIBERLOOP_API TaskStateBase : public FutureStateBase {
 public:
  TaskStateBase(EventLoop& loop, const TaskOptions& options);
  ~TaskStateBase() override;

  // operator new(size, where) places a task state at the top of its own
  // fiber stack of where.stack_size (states up to 1 KiB; see
  // detail::allocate_with_stack), so that a parked task touches one page;
  // `new (where) TaskState(...)`. Throws as StackPool::allocate().
  struct OnStack {
    std::size_t stack_size = 0;
    std::size_t size = 0;  // filled by operator new, for the placement delete
    std::size_t align = 0;
  };
  static void* operator new(std::size_t size, OnStack& where) {
    where.size = size;
    return allocate_with_stack(size, 0, where.stack_size);
  }
  static void* operator new(std::size_t size, std::align_val_t align, OnStack& where) {
    where.size = size;
    where.align = static_cast<std::size_t>(align);
    return allocate_with_stack(size, where.align, where.stack_size);
  }
  static void operator delete(void* p, std::size_t size) noexcept {
    release_with_stack(p, size, 0);
  }
  static void operator delete(void* p, std::size_t size, std::align_val_t align) noexcept {
    release_with_stack(p, size, static_cast<std::size_t>(align));
  }
  static void operator delete(void* p, OnStack& where) noexcept {
    release_with_stack(p, where.size, where.align);
  }
  static void operator delete(void* p, std::align_val_t, OnStack& where) noexcept {
    release_with_stack(p, where.size, where.align);
  }

  // cancel() is Task.cancel(): cancel the awaited future, or make the next
  // step raise CancelledError. False if the task is done.
  bool cancel(std::string message) override { return request_cancel(std::move(message), 0); }
  // request_cancel(message, depth) is cancel() for a request that may be
  // raised while at most `depth` exceptions are in flight in the task (a
  // Timeout's: its own depth). Deeper, in a destructor run by an unwinding,
  // a CancelledError would end in std::terminate: the request is held until
  // the unwinding is over (README "Cancellation").
  bool request_cancel(std::string message, int depth);
  std::string describe() const override;

  // name() is the name given, else "Task-N", built on first use: most tasks
  // are never asked, and spawning should not pay for the string.
  const std::string& name() const;
  void set_name(std::string name) { name_ = std::move(name); }
  // label() names the task as name() does, without building a string: what
  // a signal handler may read (an empty name stands for "Task-<number>").
  StackLabel label() const noexcept { return {&name_, number_}; }
  int cancelling() const noexcept { return cancels_requested_; }
  int uncancel() noexcept;

  // suspend_current(fut) parks the running task until fut is done (null: for
  // one loop iteration); called inside a Generator the task drives, it parks
  // the task with the generator inside its send(). Throws RuntimeError
  // outside a task; throws what the task must see raised at its await.
  // Aborts with fiberloop's message when the fiber is being unwound.
  static void suspend_current(FutureStateBase* fut, const char* what = "await()");
  // suspend_current_slow() is suspend_current() off its fast path: outside a
  // task, in a generator the task drives, or while unwinding.
  static void suspend_current_slow(FutureStateBase* fut, const char* what);
  // require_current(what) throws RuntimeError naming `what` outside a task,
  // and aborts with fiberloop's message when called from a fiber being
  // unwound (no wait can complete then).
  static TaskStateBase& require_current(const char* what);
  static TaskStateBase& require_current_slow(const char* what);
  // current() is the task whose step is running on this thread, or null.
  static TaskStateBase* current() noexcept;
  // spend_budget() counts one operation that completes without waiting
  // against the running task's budget (EventLoop::task_budget()), and
  // yields for one iteration when it is spent. Outside a task, or where no
  // wait can be made, it does nothing. May throw CancelledError.
  static void spend_budget();

  // LastStepped records, while it lives, the name of the last task that
  // stepped on this thread (debug mode names slow task steps with it).
  class LastStepped {
   public:
    explicit LastStepped(std::string& sink) noexcept;
    ~LastStepped();
    LastStepped(const LastStepped&) = delete;
    LastStepped& operator=(const LastStepped&) = delete;

   private:
    std::string* previous_;
  };

 protected:
  // start() registers the task with the loop and schedules its first step.
  void start();

  // Recycling (TaskState::make()). spare_ready(): finished with a value,
  // nothing pending on the side. clear_for_spare() lets go of the name.
  // name_for_restart(options) takes the next task's name (it may throw:
  // nothing else changed then); restart(loop, options) makes the rest of
  // the state a new task's, pending, its fiber created again.
  bool spare_ready() const noexcept {
    if (!recyclable()) return false;
    // Finished with a value: the function returned, so the fiber ended (and
    // a task's entry is trivially destructible), and nothing is pending.
    assert(fiber_.restartable() && !fut_waiter_ && !step_exc_ && !body_error_ &&
           !must_cancel_ && !prev_task_ && !next_task_);
    return true;
  }
  // become_spare(): spare_ready(), and the pool keeps the stack a spare's.
  bool become_spare() noexcept { return spare_ready() && keep_as_spare(fiber_.stack_slot()); }
  void clear_for_spare() noexcept {
    if (!name_.empty()) [[unlikely]]
      clear_name();
  }
  void clear_name() noexcept;
  void name_for_restart(const TaskOptions& options) {
    if (!options.name.empty()) [[unlikely]]
      name_ = options.name;
  }
  void restart(EventLoop& loop, const TaskOptions& options) noexcept;

 private:
  friend class fiberloop::EventLoop;
  friend class FutureStateBase;  // wakeup()

  virtual void run_body() = 0;  // calls the function; stores its value
  virtual void drop_value() noexcept = 0;

  // step() is asyncio's Task.__step: it resumes the function, throwing
  // step_exc_ (or CancelledError, if a cancel() is pending) at its await.
  void step();
  // prepare_unusual_step() is step()'s start for a done task (it throws) or
  // one with a cancel() pending (CancelledError goes in).
  void prepare_unusual_step();
  // wakeup(fut) queues the step that resumes the task at its await of fut;
  // fut calls it (in its done-callback order) when it completes.
  void wakeup(FutureStateBase& fut);
  void wakeup_slow(FutureStateBase& fut);
  void schedule_step(std::exception_ptr exc = nullptr);
  // queue_step() puts the task's step in the ready queue (the loop is live:
  // only a task that runs, or a future its loop completes, calls it).
  void queue_step() { loop_or_null()->requeue_step(&step_); }
  // resume_body(eager) switches to the function until it awaits (its wait
  // registered) or returns (then finishes the task); eager: the first
  // step, run inside create_task (eager_start).
  void resume_body(bool eager);
  // resume_body()'s rare and last paths: unwind_unstarted() raises a
  // cancellation in a task that never ran; body_returned() finishes the task
  // with its value, body_threw() (in a catch block) with what it threw.
  [[noreturn]] void unwind_unstarted();
  void body_returned();
  void cancel_returned();
  void body_threw();
  // run_fiber() is the fiber's entry: the function, its exception kept.
  void run_fiber();
  // park(fut), on the task's own fiber, registers the wait for fut (null:
  // queues the next step) and switches to the loop until the next step;
  // throws what that step throws in.
  void park(FutureStateBase* fut);
  void wait_on(FutureStateBase* fut);
  // refuse_wait(fut) makes the await of fut raise: another loop's future,
  // or the task itself. cancel_awaited() passes a pending cancel() on to
  // the future just awaited.
  void refuse_wait(FutureStateBase* fut);
  void cancel_awaited();
  // cancel_held(): a pending cancel() may not be raised yet, the task being
  // deeper in an unwinding than the request allows.
  bool cancel_held() const noexcept { return fiber_.uncaught_exceptions() > cancel_depth_; }
  void end() noexcept;
  void report_never_retrieved() noexcept;
  // abandon() is the loop closing under a pending task: unwind the fiber.
  void abandon() noexcept;

  unsigned long number_;
  // fut_waiter_ holds no reference: the wait that awaits it (on the task's
  // fiber, parked) holds one until the task's next step, which clears it.
  FutureStateBase* fut_waiter_ = nullptr;
  // step_ is this task's one entry in the ready queue, reused by every step
  // (a task is queued at most once at a time: the invariant above), and
  // part of the task, not a block of its own. The queue holds no reference
  // to it: a queued step is a pending task's, which the loop holds until it
  // ends (and close() drops the queue around each task it abandons).
  // step_exc_ is what that step throws in.
  HandleState step_;
  std::exception_ptr step_exc_;
  std::exception_ptr body_error_;          // what the function threw
  mutable std::string name_;
  bool eager_start_;
  int cancels_requested_ = 0;
  bool must_cancel_ = false;
  int cancel_depth_ = 0;  // must_cancel_'s depth (request_cancel())
  std::size_t budget_left_ = 0;        // spend_budget(): operations left in this step
  std::uint64_t budget_iteration_ = 0;  // the loop iteration budget_left_ counts in
  TaskStateBase* prev_task_ = nullptr;  // the loop's list of live tasks
  TaskStateBase* next_task_ = nullptr;
  // The function's fiber, driven directly (not through a Generator: each
  // step is a switch, and the layers between were most of its cost). Last:
  // its unwinding may still use the members above.
  Fiber fiber_;
};

// TaskState<R, Call> is a task of one function type. A finished one whose
// last handle goes may stay, whole, at the top of its stack as its type's
// spare on this thread: the next create_task() of that type (default stack
// size) resets the fields a run changed and makes its fiber a new context on
// the same stack, instead of building a state and taking a stack. Only
// states placed on their stacks that finished with a value qualify.
template <class R, class Call>
class TaskState final : public TaskStateBase {
 public:
  TaskState(EventLoop& loop, const TaskOptions& options, Call call)
      : TaskStateBase(loop, options), call_(std::move(call)) {
    if constexpr (!std::is_void_v<R>) value_ = &value_slot_;
  }

  // make(loop, options, call) is this type's spare made a new task, or a new state.
  static TaskState* make(EventLoop& loop, const TaskOptions& options, Call&& call) {
    if constexpr (kRecycles) {
      if (TaskState* s = spare_; s && !options.stack_size) [[likely]] {
        spare_ = nullptr;
        try {
          s->name_for_restart(options);
          s->call_.emplace(std::move(call));
        } catch (...) {
          s->clear_for_spare();
          spare_ = s;
          throw;
        }
        s->restart(loop, options);
        return s;
      }
      if (!dropper_.registered) [[unlikely]]
        register_spare_dropper(&dropper_);
    }
    OnStack where{options.stack_size};
    return new (where) TaskState(loop, options, std::move(call));
  }

  // The last reference's delete keeps a finished state as the spare, if it
  // qualifies and the type has none yet on this thread.
  static void operator delete(TaskState* p, std::destroying_delete_t) noexcept {
    if constexpr (kRecycles) {
      // The value goes first: its destructor may spawn and end tasks. (A
      // trivially destructible one is overwritten by the next run's.)
      if constexpr (!std::is_trivially_destructible_v<R>) p->drop_value();
      if (!spare_ && p->become_spare()) [[likely]] {
        p->clear_for_spare();
        spare_ = p;
        return;
      }
    }
    p->destroy();
  }
  using TaskStateBase::operator delete;  // a constructor's placement delete

 private:
  // kRecycles: states placed on their stacks (allocate_with_stack()), by
  // the unaligned operator new, only.
  static constexpr bool kRecycles = placed_on_stack(sizeof(TaskState), alignof(TaskState)) &&
                                    alignof(TaskState) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  static void drop_spare() noexcept {
    if (TaskState* s = std::exchange(spare_, nullptr)) s->destroy();
  }
  static inline constinit thread_local TaskState* spare_ = nullptr;
  static inline constinit thread_local SpareDropper dropper_{&TaskState::drop_spare};
  void destroy() noexcept {
    this->~TaskState();
    if constexpr (alignof(TaskState) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      release_with_stack(this, sizeof(TaskState), alignof(TaskState));
    } else {
      release_with_stack(this, sizeof(TaskState), 0);
    }
  }

 private:
  void run_body() override {
    // The function and its arguments go as soon as it returns: a finished
    // task held by someone does not pin what it was given.
    struct Release {
      std::optional<Call>& call;
      ~Release() { call.reset(); }
    } release{call_};
    if constexpr (std::is_void_v<R>) {
      (*call_)();
    } else {
      value_slot_.emplace((*call_)());
    }
  }
  void drop_value() noexcept override {
    if constexpr (!std::is_void_v<R>) value_slot_.reset();
  }

  std::optional<Call> call_;
  struct None {};
  [[no_unique_address]] std::conditional_t<
      std::is_void_v<R>, None, std::optional<std::conditional_t<std::is_void_v<R>, int, R>>>
      value_slot_;
};

}  // namespace detail

// Task<T> is a Future<T> whose result is the return value of a function run
// on its own fiber; create one with loop.create_task() or spawn().
//
// Example:
//   auto t = loop.create_task([] { fiberloop::sleep(0.1); return 42; });
//   int v = loop.run_until_complete(t);
//
// cancel() makes the function see CancelledError at its await (or never run,
// if it has not started); it may catch it and carry on, as in asyncio.
template <class T>
class Task : public Future<T> {
 public:
  Task() noexcept = default;
  explicit Task(detail::Ref<detail::FutureStateBase> state) noexcept
      : Future<T>(std::move(state)) {}

  // get_name() is "Task-N" unless set.
  const std::string& get_name() const { return task().name(); }
  void set_name(std::string name) const { task().set_name(std::move(name)); }
  // cancelling() counts pending cancel() requests; uncancel() takes one back.
  int cancelling() const { return task().cancelling(); }
  int uncancel() const { return task().uncancel(); }

 private:
  detail::TaskStateBase& task() const { return static_cast<detail::TaskStateBase&>(this->state()); }
};

// AnyTask is a Task of any result type, as current_task() and all_tasks()
// return it.
class AnyTask {
 public:
  template <class T>
  AnyTask(const Task<T>& t)  // NOLINT: implicit, any task is AnyTask
      : state_(static_cast<detail::TaskStateBase*>(t.state_ptr())) {}
  explicit AnyTask(detail::TaskStateBase* state) noexcept : state_(state) {}

  const std::string& get_name() const { return state_->name(); }
  void set_name(std::string name) const { state_->set_name(std::move(name)); }
  bool done() const noexcept { return state_->done(); }
  bool cancelled() const noexcept { return state_->cancelled(); }
  bool cancel(std::string message = {}) const { return state_->cancel(std::move(message)); }
  int cancelling() const noexcept { return state_->cancelling(); }
  int uncancel() const noexcept { return state_->uncancel(); }
  std::exception_ptr exception() const { return state_->exception(); }
  EventLoop& get_loop() const { return state_->loop(); }
  detail::TaskStateBase& state() const noexcept { return *state_; }
  friend bool operator==(const AnyTask& a, const AnyTask& b) noexcept {
    return a.state_ == b.state_;
  }

 private:
  detail::Ref<detail::TaskStateBase> state_;
};

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
    check_closed();
    // Called once: the copies are moved into fn, as std::thread's are.
    auto call = [fn = std::forward<Fn>(fn), ... args = std::forward<Args>(args)]() mutable -> R {
      return std::invoke(std::move(fn), std::move(args)...);
    };
    auto* state = detail::TaskState<R, decltype(call)>::make(*this, options, std::move(call));
    Task<R> task{detail::Ref<detail::FutureStateBase>(state)};
    state->start();  // with a handle held: an eager task may finish right here
    return task;
  }
}

}  // namespace fiberloop
