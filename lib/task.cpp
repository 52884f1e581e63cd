#include "fiberloop/task.hpp"

#include <atomic>

namespace fiberloop::detail {
namespace {

thread_local TaskStateBase* current_task = nullptr;
thread_local std::string* stepped_sink = nullptr;
std::atomic<unsigned long> task_counter{0};

bool is_cancellation(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const CancelledError&) {
    return true;
  } catch (...) {
    return false;
  }
}

// Entered marks a task as the one running its step, as asyncio's _enter_task.
class Entered {
 public:
  explicit Entered(TaskStateBase* task) : previous_(current_task) {
    if (previous_) {
      throw RuntimeError("Cannot enter into " + task->describe() + " while another task " +
                         previous_->describe() + " is being executed.");
    }
    current_task = task;
    if (stepped_sink) *stepped_sink = task->name();
  }
  ~Entered() { current_task = previous_; }
  Entered(const Entered&) = delete;
  Entered& operator=(const Entered&) = delete;

 private:
  TaskStateBase* previous_;
};

}  // namespace

TaskStateBase::LastStepped::LastStepped(std::string& sink) noexcept : previous_(stepped_sink) {
  stepped_sink = &sink;
}
TaskStateBase::LastStepped::~LastStepped() { stepped_sink = previous_; }

TaskStateBase::TaskStateBase(EventLoop& loop, TaskOptions options)
    : FutureStateBase(loop),
      // The label makes the stack the generator takes next this task's: an
      // overflow report then prints the task's name.
      gen_((label_next_stack(&name_, 0), [this](auto&) { run_body(); }), options.stack_size),
      name_(options.name.empty() ? "Task-" + std::to_string(++task_counter)
                                 : std::move(options.name)) {}

TaskStateBase::~TaskStateBase() {
  if (log_traceback_) {
    log_traceback_ = false;
    ExceptionContext context{"Task exception was never retrieved", exception_, name_};
    if (EventLoop* l = loop_or_null()) {
      l->call_exception_handler(context);
    } else {
      EventLoop::default_exception_handler(context);
    }
  }
}

TaskStateBase* TaskStateBase::current() noexcept { return current_task; }

std::string TaskStateBase::describe() const { return "Task '" + name_ + "'"; }

void TaskStateBase::start() {
  EventLoop& l = loop();
  l.register_task(this);
  try {
    schedule_step();
  } catch (...) {
    l.unregister_task(this);
    throw;
  }
}

void TaskStateBase::schedule_step(std::exception_ptr exc) {
  loop().call_soon(
      [self = Ref(this), exc = std::move(exc)]() mutable { self->step(std::move(exc)); });
}

bool TaskStateBase::cancel(std::string message) {
  log_traceback_ = false;
  if (done()) return false;
  ++cancels_requested_;
  // Leave fut_waiter_ set: it may be a task that ignores the cancellation,
  // to be cancelled again later.
  if (fut_waiter_ && fut_waiter_->cancel(message)) return true;
  // Then step() is scheduled already; it will raise CancelledError.
  must_cancel_ = true;
  cancel_message_ = std::move(message);
  return true;
}

int TaskStateBase::uncancel() noexcept {
  if (cancels_requested_ > 0) --cancels_requested_;
  if (cancels_requested_ == 0) must_cancel_ = false;
  return cancels_requested_;
}

void TaskStateBase::step(std::exception_ptr exc) {
  if (done()) throw InvalidStateError("step(): " + describe() + " is already done");
  if (must_cancel_) {
    if (!exc || !is_cancellation(exc))
      exc = std::make_exception_ptr(CancelledError(cancel_message_));
    must_cancel_ = false;
  }
  fut_waiter_.reset();
  Ref self(this);  // finishing drops the loop's reference
  std::optional<FutureStateBase*> awaited;
  try {
    Entered entered(this);
    awaited = exc ? gen_.throw_into(std::move(exc)) : gen_.send();
  } catch (const CancelledError& e) {
    mark_cancelled(e.message());
    end();
    return;
  } catch (...) {
    set_exception(std::current_exception());
    end();
    return;
  }
  if (!awaited) {        // the function returned
    if (must_cancel_) {  // cancelled right before it returned
      must_cancel_ = false;
      drop_value();
      mark_cancelled(cancel_message_);
    } else {
      finish();
    }
    end();
    return;
  }
  wait_on(*awaited);
}

void TaskStateBase::wait_on(FutureStateBase* fut) {
  if (!fut) {  // sleep(0): one trip through the ready queue
    schedule_step();
    return;
  }
  if (fut->loop_or_null() != loop_or_null()) {
    schedule_step(std::make_exception_ptr(
        RuntimeError(describe() + " got " + fut->describe() + " attached to a different loop")));
    return;
  }
  if (fut == this) {
    schedule_step(
        std::make_exception_ptr(RuntimeError("Task cannot await on itself: " + describe())));
    return;
  }
  fut->add_done_callback([self = Ref(this)](FutureStateBase& done) { self->wakeup(done); });
  fut_waiter_ = Ref(fut);
  if (must_cancel_ && fut_waiter_->cancel(cancel_message_)) must_cancel_ = false;
}

void TaskStateBase::wakeup(FutureStateBase& fut) { step(fut.waiter_exception()); }

TaskStateBase& TaskStateBase::require_current(const char* what) {
  if (!current_task) {
    throw RuntimeError(std::string(what) +
                       " called outside a task: only code running in a Task can wait "
                       "(use EventLoop::run_until_complete from plain code)");
  }
  return *current_task;
}

void TaskStateBase::suspend_current(FutureStateBase* fut) {
  require_current("await()").gen_.yield(fut);
}

void TaskStateBase::end() noexcept {
  if (EventLoop* l = loop_or_null()) l->unregister_task(this);
}

void TaskStateBase::abandon() noexcept {
  Ref self(this);
  gen_.close();  // unwinds the fiber: the function's destructors run
  fut_waiter_.reset();
  status_ = Status::cancelled;
  drop_callbacks();
  drop_value();
  if (EventLoop* l = loop_or_null()) {
    l->call_exception_handler({"Task was destroyed but it is pending!", nullptr, name_});
  }
  end();
}

}  // namespace fiberloop::detail
