// task_state.cpp: a task's step/wakeup machine (asyncio's Task.__step and
// __wakeup) over its fiber.
//
// Invariant (asyncio's): until the task is done, either fut_waiter_ is null
// and one step is scheduled, or fut_waiter_ is set and no step is — a task
// waits on one future at a time, and runs only when that future is done.
// step() and wait_on() assert it (FIBERLOOP_ASSERT).
#include "fiberloop/detail/task_state.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "../fiber/fiber_switch.hpp"
#include "fiberloop/detail/pending_flush.hpp"
#include "task_number.hpp"

namespace fiberloop::detail {

constinit thread_local TaskStateBase* TaskStateBase::running_ = nullptr;

namespace {

constinit thread_local std::string* stepped_sink = nullptr;
constinit thread_local TaskStateBase::LastStepped::Told stepped_told = nullptr;
constinit thread_local void* stepped_context = nullptr;

// rethrow_and_clear(e) throws e, leaving it empty: a step's rare path, out
// of line so that the exception handling stays out of the step's frames.
[[noreturn, gnu::noinline]] void rethrow_and_clear(std::exception_ptr& e) {
  std::rethrow_exception(std::exchange(e, nullptr));
}

// Entered marks a task as the one running its step, as asyncio's _enter_task.
class Entered {
 public:
  // An eager first step (inside create_task) may run from another task's
  // step: that task is set aside meanwhile, as asyncio's _swap_current_task.
  Entered(TaskStateBase* task, bool eager) : previous_(TaskStateBase::running_) {
    if (previous_ && !eager) [[unlikely]]
      throw_nested(task);
    TaskStateBase::running_ = task;
    if (stepped_sink) [[unlikely]]
      record_step(task);
  }
  ~Entered() { TaskStateBase::running_ = previous_; }
  // Out of line, as the other rare paths of a step: their strings would give
  // the step's functions a frame.
  [[noreturn, gnu::noinline]] void throw_nested(TaskStateBase* task) const {
    throw RuntimeError("Cannot enter into " + task->describe() + " while another task " +
                       previous_->describe() + " is being executed.");
  }
  [[gnu::noinline]] static void record_step(TaskStateBase* task) {
    *stepped_sink = task->name();
    if (stepped_told) stepped_told(stepped_context, *stepped_sink);
  }
  Entered(const Entered&) = delete;
  Entered& operator=(const Entered&) = delete;

 private:
  TaskStateBase* previous_;
};

}  // namespace

TaskStateBase::LastStepped::LastStepped(std::string& sink, Told told, void* context) noexcept
    : previous_(stepped_sink), previous_told_(stepped_told), previous_context_(stepped_context) {
  stepped_sink = &sink;
  stepped_told = told;
  stepped_context = context;
}
TaskStateBase::LastStepped::~LastStepped() {
  stepped_sink = previous_;
  stepped_told = previous_told_;
  stepped_context = previous_context_;
}

TaskStateBase::TaskStateBase(LoopCore& core, const TaskOptions& options, OnStack& where)
    : FutureStateBase(core),
      eager_start_(options.eager_start),
      step_(&core, HandleState::Kind::task_step),
      number_(next_task_number()),
      // (A copy of an empty name still costs a call.)
      name_(options.name.empty() ? std::string() : options.name) {
  step_.callback.emplace([this] { step(); });
  step_.warm = &fiber_;
  // The label makes the stack this task's: an overflow report then prints
  // the task's name (or Task-N, from the number).
  FiberStack stack = std::exchange(where.stack, FiberStack{});
  label_fiber_stack(stack.slot, StackLabel{&name_, number_});
  fiber_.create(stack, [this] { run_fiber(); });
}

TaskStateBase* TaskStateBase::current() noexcept { return TaskStateBase::running_; }

void TaskStateBase::start() {
  LoopCore& core = *core_or_null();  // live: create_task() checked it
  add_ref();  // the live list's
  core.add_live(this);
  if (eager_start_ && core.running()) {
    resume_body(true);
    return;
  }
  try {
    core.requeue_step(&step_);
  } catch (...) {
    end();
    throw;
  }
}

void TaskStateBase::schedule_step(std::exception_ptr exc) {
  step_exc_ = std::move(exc);
  queue_step();
}

bool TaskStateBase::request_cancel(std::string message, int depth) {
  log_traceback_ = false;
  if (done()) return false;
  ++cancels_requested_;
  // Leave fut_waiter_ set: it may be a task that ignores the cancellation,
  // to be cancelled again later.
  if (parked_ && fiber_.uncaught_exceptions() <= depth && withdraw_parked()) {
    // As a cancelled future would: the wait raises CancelledError(message).
    schedule_step(std::make_exception_ptr(CancelledError(std::move(message))));
    return true;
  }
  if (fut_waiter_ && fiber_.uncaught_exceptions() <= depth) {
    if (passing_cancel_) [[unlikely]] {
      leave_await_cycle();
    } else {
      struct Passing {
        bool& flag;
        explicit Passing(bool& f) : flag(f) { flag = true; }
        ~Passing() { flag = false; }
      } passing(passing_cancel_);
      if (fut_waiter_->cancel(message)) return true;
    }
  }
  // Then step() is scheduled already, or the request is held: the first
  // step or wait where it may be raised raises CancelledError.
  if (!must_cancel_ || depth > cancel_depth_) cancel_depth_ = depth;
  must_cancel_ = true;
  set_cancel_message(std::move(message));
  return true;
}

// The request came back round while this task passed it on: it awaits a
// task that awaits ... this one (asyncio recurses until RecursionError).
// This task stops waiting, and its step (queued here) raises the request
// as CancelledError, so the cycle unwinds from here, each task woken by the
// end of the one it awaits.
[[gnu::noinline]] void TaskStateBase::leave_await_cycle() {
  std::exchange(fut_waiter_, nullptr)->remove_waiter(this);
  queue_step();
}

int TaskStateBase::uncancel() noexcept {
  if (cancels_requested_ > 0) --cancels_requested_;
  if (cancels_requested_ == 0) must_cancel_ = false;
  return cancels_requested_;
}

void TaskStateBase::step() {
  FIBERLOOP_ASSERT(!fut_waiter_ || fut_waiter_->done(),
                   "a task stepped while the future it waits on is pending (asyncio's invariant)");
  if (done() || must_cancel_) [[unlikely]]
    prepare_unusual_step();
  fut_waiter_ = nullptr;
  parked_ = nullptr;
  resume_body(false);
}

// Out of line, so that its strings give step() no frame.
[[gnu::noinline]] void TaskStateBase::prepare_unusual_step() {
  if (done()) {
    step_exc_ = nullptr;
    throw InvalidStateError("step(): " + describe() + " is already done");
  }
  if (cancel_held()) return;  // the step resumes the unwinding's wait as it ended
  if (!step_exc_ || !is_cancellation(step_exc_))
    step_exc_ = std::make_exception_ptr(CancelledError(cancel_message()));
  must_cancel_ = false;
}

void TaskStateBase::run_fiber() {
  try {
    run_body();
  } catch (const FiberUnwind&) {
    throw;
  } catch (...) {
    body_error_ = std::current_exception();
  }
  // What the task wrote goes before it ends (here, on its fiber, where a
  // step's end already keeps a frame).
  if (fiber_thread.flushes_queued) [[unlikely]]
    run_pending_flushes();
}

// resume_body() takes no reference to the task: finishing drops the loop's,
// maybe the last, and nothing touches `this` after end(). Its ends (the
// function returned or threw) are out of line, to keep a step frameless.
void TaskStateBase::resume_body(bool eager) {
  try {
    Entered entered(this, eager);
    if (step_exc_ && !fiber_.started()) [[unlikely]]
      unwind_unstarted();
    fiber_.resume();
    if (body_error_) [[unlikely]]
      rethrow_and_clear(body_error_);
  } catch (...) {
    body_threw();
    return;
  }
  // Otherwise it parked, and its wait is registered (park()).
  if (fiber_.finished()) [[unlikely]]
    body_returned();
}

// Cancelled before its first step: the function never runs, as a generator
// thrown into before it started.
[[gnu::noinline]] void TaskStateBase::unwind_unstarted() {
  fiber_.unwind();
  rethrow_and_clear(step_exc_);
}

[[gnu::noinline]] void TaskStateBase::body_returned() {
  if (must_cancel_) [[unlikely]] {
    cancel_returned();
  } else {
    finish();
  }
  end();
}

// Cancelled right before it returned: the value goes, the task ends cancelled.
[[gnu::noinline]] void TaskStateBase::cancel_returned() {
  must_cancel_ = false;
  drop_value();
  mark_cancelled(cancel_message());
}

[[gnu::noinline]] void TaskStateBase::body_threw() {
  try {
    throw;
  } catch (const CancelledError& e) {
    mark_cancelled(e.message());
  } catch (...) {
    set_exception(std::current_exception());
  }
  end();
}

// park() registers the wait before it switches out, as asyncio's __step
// does right after the coroutine yields: nothing runs in between.
void TaskStateBase::park(FutureStateBase* fut, const char* what, std::source_location where) {
  wait_.what = what;
  wait_.where = where;
  wait_.since_ns = core_or_null()->iteration_ns();
  if (fut) {
    wait_on(fut);
  } else {
    queue_step();  // sleep(0): one trip through the ready queue
  }
  fiber_.suspend_inline();  // the callers checked: on this fiber, nothing unwinding
  if (step_exc_) [[unlikely]]
    rethrow_and_clear(step_exc_);
}

void TaskStateBase::park_without_future(ParkedWait& wait, const char* what,
                                        std::source_location where) {
  wait_.what = what;
  wait_.where = where;
  wait_.since_ns = core_or_null()->iteration_ns();
  parked_ = &wait;
  // A cancel() that came while the task ran ends the wait at once, as
  // wait_on() passes it to the future: the step raises it.
  if (must_cancel_ && !cancel_held() && withdraw_parked()) [[unlikely]]
    queue_step();
  fiber_.suspend_inline();
  if (step_exc_) [[unlikely]]
    rethrow_and_clear(step_exc_);
}

// Out of line: a cancel's path, which the park itself does not take.
[[gnu::noinline]] bool TaskStateBase::withdraw_parked() noexcept {
  if (!parked_->withdraw(*parked_)) return false;
  parked_ = nullptr;
  return true;
}

void TaskStateBase::wait_on(FutureStateBase* fut) {
  if (!fut->same_loop(*this) || fut == this) [[unlikely]] {
    refuse_wait(fut);
    return;
  }
  FIBERLOOP_ASSERT(!fut_waiter_, "a task waits on two futures at once (asyncio's invariant)");
  fut->add_waiter(this);
  fut_waiter_ = fut;
  if (must_cancel_) [[unlikely]]
    cancel_awaited();
}

// The rare ends of wait_on(), out of line: their strings would give it a frame.
[[gnu::noinline]] void TaskStateBase::refuse_wait(FutureStateBase* fut) {
  if (fut == this) {
    schedule_step(
        std::make_exception_ptr(RuntimeError("Task cannot await on itself: " + describe())));
    return;
  }
  schedule_step(std::make_exception_ptr(
      RuntimeError(describe() + " got " + fut->describe() + " attached to a different loop")));
}

[[gnu::noinline]] void TaskStateBase::cancel_awaited() {
  if (cancel_held()) return;
  if (fut_waiter_->cancel(cancel_message())) must_cancel_ = false;
}

void TaskStateBase::wakeup(FutureStateBase& fut) {
  // Most wakeups carry a value, and step_exc_ is already empty then.
  if (!fut.has_value() || step_exc_) [[unlikely]] {
    wakeup_slow(fut);
    return;
  }
  queue_step();
}

[[gnu::noinline]] void TaskStateBase::wakeup_slow(FutureStateBase& fut) {
  step_exc_ = fut.waiter_exception();
  queue_step();
}

void die_if_unwinding(const char* what) noexcept {
  if (Fiber::current_chain_unwinding()) {
    std::fprintf(stderr,
                 "fiberloop: %s called while the fiber is being unwound: a catch (...) "
                 "swallowed FiberUnwind (it must rethrow it), or a destructor waits while "
                 "close() or a Generator's destruction unwinds the fiber (no wait can "
                 "complete then)\n",
                 what);
    std::abort();
  }
}

TaskStateBase& TaskStateBase::require_current(const char* what) {
  if (TaskStateBase::running_ && fiber_thread.unwinding == 0) [[likely]] return *TaskStateBase::running_;
  return require_current_slow(what);
}

// Out of line: its messages' strings would give require_current() a frame.
[[gnu::noinline]] TaskStateBase& TaskStateBase::require_current_slow(const char* what) {
  die_if_unwinding(what);
  if (!TaskStateBase::running_) {
    if (Fiber::current()) {
      throw RuntimeError(std::string(what) +
                         " called inside a Generator driven from outside a task: a wait in a "
                         "generator's body suspends the task that drives it, so call the "
                         "generator's send() from a task");
    }
    throw RuntimeError(std::string(what) +
                       " called outside a task: only code running in a Task can wait "
                       "(use EventLoop::run_until_complete from plain code)");
  }
  return *TaskStateBase::running_;
}

void TaskStateBase::suspend_current(FutureStateBase* fut, const char* what,
                                    std::source_location where) {
  TaskStateBase* task = TaskStateBase::running_;
  if (task && fiber_thread.current == &task->fiber_ && wait_is_plain()) [[likely]] {
    task->park(fut, what, where);
    return;
  }
  suspend_current_slow(fut, what, where);
}

[[gnu::noinline]] void TaskStateBase::suspend_current_slow(FutureStateBase* fut,
                                                          const char* what,
                                                          std::source_location where) {
  TaskStateBase& task = require_current(what);
  // Coalesced writes reach the kernel before the task waits: request and
  // response code cannot deadlock on bytes still in a buffer.
  if (fiber_thread.flushes_queued) run_pending_flushes();
  if (Fiber::current() == &task.fiber_) {
    task.park(fut, what, where);
    return;
  }
  // A generator (or a generator in a generator) that this task drives: its
  // fiber hands the wait to whoever resumed it, up to the task's own fiber,
  // and stays parked inside their send() until the wait is over.
  struct Wait {
    FutureStateBase* fut;
    const char* what;
    std::source_location where;
  } wait{fut, what, where};
  Fiber::current()->forward(
      [](void* w) {
        auto* wait = static_cast<Wait*>(w);
        suspend_current(wait->fut, wait->what, wait->where);
      },
      &wait);
}

void TaskStateBase::park_current(ParkedWait& wait, const char* what, std::source_location where) {
  TaskStateBase* task = TaskStateBase::running_;
  if (task && fiber_thread.current == &task->fiber_ && wait_is_plain()) [[likely]] {
    task->park_without_future(wait, what, where);
    return;
  }
  park_current_slow(wait, what, where);
}

// suspend_current_slow()'s twin for a wait with no future.
[[gnu::noinline]] void TaskStateBase::park_current_slow(ParkedWait& wait, const char* what,
                                                       std::source_location where) {
  TaskStateBase& task = require_current(what);
  if (fiber_thread.flushes_queued) run_pending_flushes();
  if (Fiber::current() == &task.fiber_) {
    task.park_without_future(wait, what, where);
    return;
  }
  struct Wait {
    ParkedWait& wait;
    const char* what;
    std::source_location where;
  } forwarded{wait, what, where};
  Fiber::current()->forward(
      [](void* w) {
        auto* f = static_cast<Wait*>(w);
        park_current(f->wait, f->what, f->where);
      },
      &forwarded);
}

void TaskStateBase::spend_budget_slow() {
  TaskStateBase* task = TaskStateBase::running_;
  if (!task) return;
  LoopCore* core = task->core_or_null();
  if (!core || core->task_budget() == 0) return;
  // A step runs within one iteration, and a task steps at most once per
  // iteration but for an eager start: counting per iteration is per step.
  if (task->budget_iteration_ != core->iteration()) {
    task->budget_iteration_ = core->iteration();
    // Held in 32 bits, beside the step's other members: a budget past 4
    // billion operations is no budget in practice.
    task->budget_left_ = static_cast<std::uint32_t>(
        std::min<std::size_t>(core->task_budget(), UINT32_MAX));
  }
  if (--task->budget_left_ > 0) return;
  if (Fiber::current_chain_unwinding()) return;  // no wait can be made there
  suspend_current(nullptr, "the cooperative budget's yield", std::source_location::current());
}

void TaskStateBase::end() noexcept {
  LoopCore* core = core_or_null();
  if (core && core->remove_live(this)) Ref<TaskStateBase>::adopt(this);  // the list's reference
}

void TaskStateBase::abandon() noexcept {
  Ref self(this);
  // Before the unwinding: the wait that holds the awaited future goes with it.
  if (fut_waiter_) std::exchange(fut_waiter_, nullptr)->remove_waiter(this);
  if (parked_) {  // its waker must not queue the step of a task gone
    withdraw_parked();
    parked_ = nullptr;
  }
  FIBERLOOP_ASSERT(!fiber_.finished(), "a finished task abandoned: it has left the live list");
  fiber_.unwind();  // the function's destructors run
  step_exc_ = nullptr;
  status_ = Status::cancelled;
  drop_callbacks();
  drop_value();
  if (LoopCore* core = core_or_null()) {
    core->call_exception_handler({"Task was destroyed but it is pending!", nullptr, name()});
  }
  end();
}


}  // namespace fiberloop::detail
