// detail/task_state.hpp: the state behind a Task: asyncio's Task.__step and
// __wakeup over a fiber, and the placement and recycling of task states.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstddef>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>

#include "fiberloop/detail/assert.hpp"
#include "fiberloop/detail/fiber.hpp"
#include "fiberloop/detail/loop_core.hpp"
#include "fiberloop/detail/stack_placement.hpp"
#include "fiberloop/detail/stack_spares.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"

namespace fiberloop {

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

namespace detail {

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


// die_if_unwinding(what) aborts with fiberloop's message when a wait (`what`)
// is attempted from a fiber being unwound: FiberUnwind was swallowed, or a
// destructor waits during close(). No wait could ever complete there.
FIBERLOOP_API void die_if_unwinding(const char* what) noexcept;

// ParkedWait is a wait with no future (a readiness wait): the waker holds
// the task's step handle (TaskStateBase::step_handle()) and queues it, so a
// wake-up touches neither a future nor the task. withdraw(wait) takes the
// handle back from the waker, for a cancel() or an abandon: true if it still
// had it, false if the step is queued already.
struct ParkedWait {
  bool (*withdraw)(ParkedWait& wait) noexcept;
};

// TaskStateBase is the untyped part of a task: asyncio's Task.__step and
// __wakeup, over a fiber that runs the function and parks at each await.
// It is its loop's Awaiter (a future it waits on wakes it) and a LiveTask
// (the loop's list holds it until it ends).
//
// Invariant (asyncio's): either fut_waiter_ is null and a step() is scheduled,
// or fut_waiter_ is set and step() is not — until the task is done. A wait
// with no future (parked_) stands for fut_waiter_: its waker queues the step.
class FIBERLOOP_API TaskStateBase : public FutureStateBase, public Awaiter, public LiveTask {
 public:
  // operator new(size, where) takes, in one call (place_state()), the room
  // for a task state and its fiber's stack of where.stack_size: the room at
  // the top of that same stack when the state is small enough (up to 1 KiB),
  // so that a parked task touches one page. `new (where) TaskState(..., where)`:
  // the constructor takes where.stack over for its fiber. Throws as
  // StackPool::allocate().
  struct OnStack {
    std::size_t stack_size = 0;
    std::size_t size = 0;  // filled by operator new, for the placement delete
    std::size_t align = 0;
    FiberStack stack{};    // place_state()'s stack, until the fiber takes it
  };
  TaskStateBase(LoopCore& core, const TaskOptions& options, OnStack& where);
  ~TaskStateBase() override;

  static void* operator new(std::size_t size, OnStack& where) {
    return place(size, 0, where);
  }
  static void* operator new(std::size_t size, std::align_val_t align, OnStack& where) {
    return place(size, static_cast<std::size_t>(align), where);
  }
  static void operator delete(void* p, std::size_t size) noexcept {
    release_placed_state(p, size, 0);
  }
  static void operator delete(void* p, std::size_t size, std::align_val_t align) noexcept {
    release_placed_state(p, size, static_cast<std::size_t>(align));
  }
  // The placement deletes run when a constructor threw: a stack its fiber
  // never took goes back with the room.
  static void operator delete(void* p, OnStack& where) noexcept { unplace(p, where); }
  static void operator delete(void* p, std::align_val_t, OnStack& where) noexcept {
    unplace(p, where);
  }

  // cancel() is Task.cancel(): cancel the awaited future, or make the next
  // step raise CancelledError. False if the task is done.
  bool cancel(std::string message) override { return request_cancel(std::move(message), 0); }
  // request_cancel(message, depth) is cancel() for a request that may be
  // raised while at most `depth` exceptions are in flight in the task (a
  // Timeout's: its own depth). Deeper, in a destructor run by an unwinding,
  // a CancelledError would end in std::terminate: the request is held until
  // the unwinding is over (docs/design.md, "Held cancels while unwinding").
  bool request_cancel(std::string message, int depth);
  std::string describe() const override;
  // wakeup(fut) queues the step that resumes the task at its await of fut;
  // fut calls it (in its done-callback order) when it completes.
  void wakeup(FutureStateBase& fut) final;

  // start() puts the task on its loop's live list and schedules its first
  // step (or runs it, for an eager start on a running loop).
  void start();
  // abandon() is the loop closing under a pending task: unwind the fiber.
  void abandon() noexcept;
  // of(live) is the task whose list entry `live` is.
  static TaskStateBase& of(LiveTask& live) noexcept { return static_cast<TaskStateBase&>(live); }

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
  // `what` names the call that waits (in errors and the task dump) and
  // `where` the user's line that made it (the dump).
  static void suspend_current(FutureStateBase* fut, const char* what, std::source_location where);
  // suspend_current_slow() is suspend_current() off its fast path: outside a
  // task, in a generator the task drives, or while unwinding.
  static void suspend_current_slow(FutureStateBase* fut, const char* what,
                                   std::source_location where);
  // park_current(wait, what, where) parks the running task in a wait with
  // no future, as suspend_current() does (the same checks, throws and
  // forwarding out of a generator): the caller gave step_handle() to the
  // waker first. A cancel() meanwhile withdraws the wait and raises
  // CancelledError here.
  static void park_current(ParkedWait& wait, const char* what, std::source_location where);
  static void park_current_slow(ParkedWait& wait, const char* what, std::source_location where);
  // step_handle() is what a waker of a ParkedWait queues (LoopCore::requeue_step).
  HandleState* step_handle() noexcept { return &step_; }
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
  // running_ is current(), for the inline spend_budget(); only a step sets it.
  static constinit thread_local TaskStateBase* running_;
  static void spend_budget() {
    // Inline: stream and socket calls spend on every call, and the common
    // case (budget left in this step) is a compare and a decrement.
    TaskStateBase* task = running_;
    if (!task) return;
    LoopCore* core = task->core_or_null();
    if (core && task->budget_iteration_ == core->iteration() && task->budget_left_ > 1)
        [[likely]] {
      --task->budget_left_;
      return;
    }
    spend_budget_slow();
  }
  static void spend_budget_slow();

  // WaitSite is what the task dump tells of a task's last wait: the call
  // (suspend_current()'s `what`), the line that made it, when (the loop's
  // clock at that iteration) and one number the call gives (set_wait_arg():
  // a sleep's deadline, a readiness wait's fd). Written on every park: a
  // few stores, no allocation.
  struct WaitSite {
    const char* what = nullptr;
    std::source_location where{};
    std::int64_t since_ns = 0;
    std::int64_t arg = 0;
  };
  const WaitSite& wait_site() const noexcept { return wait_; }
  // set_wait_arg(arg) gives the running task's next wait its number (the
  // calls whose dump line needs one set it right before they park).
  static void set_wait_arg(std::int64_t arg) noexcept {
    if (TaskStateBase* task = running_) task->wait_.arg = arg;
  }
  // awaiting() is the future the task is parked on, or null.
  FutureStateBase* awaiting() const noexcept { return fut_waiter_; }
  // parked(): the task waits with no future (a ParkedWait).
  bool parked() const noexcept { return parked_ != nullptr; }
  unsigned long number() const noexcept { return number_; }
  // The task that made this one in a TaskGroup (its number, 0 for none):
  // a number rather than a pointer, which could outlive the parent.
  unsigned long parent_number() const noexcept { return parent_number_; }
  void set_parent_number(unsigned long number) noexcept { parent_number_ = number; }
  // started(): its function has begun (it has a stack to show).
  bool started() const noexcept { return fiber_.started(); }
  // backtrace(frames, max) is the parked fiber's stack (Fiber::backtrace()).
  int backtrace(void** frames, int max) { return fiber_.backtrace(frames, max); }

  // LastStepped records, while it lives, the name of the last task that
  // stepped on this thread (debug mode names slow task steps with it). With
  // `told`, it also calls told(context, name) as each step begins: the stall
  // watchdog's monitor thread cannot read the sink, which the loop thread
  // writes, so the loop thread hands it a copy.
  class LastStepped {
   public:
    using Told = void (*)(void* context, const std::string& name);
    explicit LastStepped(std::string& sink, Told told = nullptr, void* context = nullptr) noexcept;
    ~LastStepped();
    LastStepped(const LastStepped&) = delete;
    LastStepped& operator=(const LastStepped&) = delete;

   private:
    std::string* previous_;
    Told previous_told_;
    void* previous_context_;
  };

 protected:
  // Recycling (TaskState::make()). spare_ready(): finished with a value,
  // nothing pending on the side. clear_for_spare() lets go of the name.
  // name_for_restart(options) takes the next task's name (it may throw:
  // nothing else changed then); restart(loop, options) makes the rest of
  // the state a new task's, pending, its fiber created again.
  bool spare_ready() const noexcept {
    if (!recyclable()) return false;
    // Finished with a value: the function returned, so the fiber ended (and
    // a task's entry is trivially destructible), and nothing is pending.
    FIBERLOOP_ASSERT(fiber_.restartable() && !fut_waiter_ && !parked_ && !step_exc_ && !body_error_ &&
                         !must_cancel_ && !prev_live && !next_live,
                     "a task state kept as a spare while something of its run remains");
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
  void restart(LoopCore& core, const TaskOptions& options) noexcept;

 private:
  static void* place(std::size_t size, std::size_t align, OnStack& where) {
    PlacedState placed = place_state(size, align, where.stack_size);
    where.size = size;
    where.align = align;
    where.stack = placed.stack;
    return placed.state;
  }
  static void unplace(void* p, OnStack& where) noexcept {
    if (where.stack.slot) give_back_fiber_stack(std::exchange(where.stack.slot, nullptr));
    release_placed_state(p, where.size, where.align);
  }

  virtual void run_body() = 0;  // calls the function; stores its value
  virtual void drop_value() noexcept = 0;

  // step() is asyncio's Task.__step: it resumes the function, throwing
  // step_exc_ (or CancelledError, if a cancel() is pending) at its await.
  void step();
  // prepare_unusual_step() is step()'s start for a done task (it throws) or
  // one with a cancel() pending (CancelledError goes in).
  void prepare_unusual_step();
  void wakeup_slow(FutureStateBase& fut);
  void schedule_step(std::exception_ptr exc = nullptr);
  // queue_step() puts the task's step in the ready queue (the loop is live:
  // only a task that runs, or a future its loop completes, calls it).
  void queue_step() { core_or_null()->requeue_step(&step_); }
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
  void park(FutureStateBase* fut, const char* what, std::source_location where);
  void park_without_future(ParkedWait& wait, const char* what, std::source_location where);
  // withdraw_parked() takes a ParkedWait's step back for a cancel(), which
  // its queued step then raises; false if the waker queued it already.
  bool withdraw_parked() noexcept;
  void wait_on(FutureStateBase* fut);
  // refuse_wait(fut) makes the await of fut raise: another loop's future,
  // or the task itself. cancel_awaited() passes a pending cancel() on to
  // the future just awaited.
  void refuse_wait(FutureStateBase* fut);
  void cancel_awaited();
  void leave_await_cycle();
  // cancel_held(): a pending cancel() may not be raised yet, the task being
  // deeper in an unwinding than the request allows.
  bool cancel_held() const noexcept { return fiber_.uncaught_exceptions() > cancel_depth_; }
  void end() noexcept;
  void report_never_retrieved() noexcept;

  // The members a step reads or writes come first, after the bases (whose
  // hot part is the future's first line), laid out for a state that starts
  // on a line (placement.cpp): this line holds the waits and the budget,
  // the next the hot part of step_, the one after it wait_, and the fiber's
  // hot part starts a line. With hundreds of tasks each step finds its task
  // cold, and each line is a miss (docs/performance.md). Moving a member
  // here means counting the lines again (callgrind's D1mr per round trip).
  //
  // fut_waiter_ holds no reference: the wait that awaits it (on the task's
  // fiber, parked) holds one until the task's next step, which clears it.
  FutureStateBase* fut_waiter_ = nullptr;
  // parked_: the wait with no future the task is parked in, on its fiber's
  // stack until the next step, which clears it.
  ParkedWait* parked_ = nullptr;
  std::exception_ptr step_exc_;  // what the next step throws in
  std::uint64_t budget_iteration_ = 0;  // the loop iteration budget_left_ counts in
  std::uint32_t budget_left_ = 0;  // spend_budget(): operations left in this step
  bool must_cancel_ = false;
  bool passing_cancel_ = false;  // request_cancel() is passing a request on
  bool eager_start_;
  // step_ is this task's one entry in the ready queue, reused by every step
  // (a task is queued at most once at a time: the invariant above), and
  // part of the task, not a block of its own. The queue holds no reference
  // to it: a queued step is a pending task's, which the loop holds until it
  // ends (and close() drops the queue around each task it abandons).
  HandleState step_;
  WaitSite wait_;
  int cancel_depth_ = 0;  // must_cancel_'s depth (request_cancel())
  int cancels_requested_ = 0;
  unsigned long number_;
  unsigned long parent_number_ = 0;
  std::exception_ptr body_error_;          // what the function threw
  mutable std::string name_;
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
  TaskState(LoopCore& core, const TaskOptions& options, Call call, OnStack& where)
      : TaskStateBase(core, options, where), call_(std::move(call)) {
    if constexpr (!std::is_void_v<R>) value_ = &value_slot_;
  }

  // make(loop, options, call) is this type's spare made a new task, or a new state.
  static TaskState* make(LoopCore& core, const TaskOptions& options, Call&& call) {
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
        s->restart(core, options);
        return s;
      }
      if (!dropper_.registered) [[unlikely]]
        register_spare_dropper(&dropper_);
    }
    OnStack where{options.stack_size};
    return new (where) TaskState(core, options, std::move(call), where);
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
  // kRecycles: states placed on their stacks (place_state()), by
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
      release_placed_state(this, sizeof(TaskState), alignof(TaskState));
    } else {
      release_placed_state(this, sizeof(TaskState), 0);
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
}  // namespace fiberloop

namespace fiberloop::detail {

// The running task, as the layers above the task see it: they check for it,
// park it and count its budget through these, and name no task class.
//
// require_task(what) throws RuntimeError naming `what` outside a task (and
// aborts with fiberloop's message on a fiber being unwound).
inline void require_task(const char* what) { TaskStateBase::require_current(what); }
// running_task() is the task whose step runs on this thread, or null.
inline TaskStateBase* running_task() noexcept { return TaskStateBase::running_; }
// suspend_task(fut, what) parks the running task until fut is done (null: for
// one iteration); TaskStateBase::suspend_current() says what it throws.
inline void suspend_task(FutureStateBase* fut, const char* what, std::source_location where) {
  TaskStateBase::suspend_current(fut, what, where);
}
// spend_budget() counts one operation done without waiting against the
// running task's cooperative budget (EventLoop::set_task_budget()).
inline void spend_budget() { TaskStateBase::spend_budget(); }

}  // namespace fiberloop::detail
