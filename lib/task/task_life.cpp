// task_life.cpp: what a task state is beyond its steps: its number and
// name, its restart as a recycled spare, and its last report.
#include "fiberloop/detail/task_state.hpp"

#include "task_number.hpp"

namespace fiberloop::detail {

void TaskStateBase::restart(LoopCore& core, const TaskOptions& options) noexcept {
  reset_for_reuse(core);
  number_ = next_task_number();
  step_.loop = &core;
  eager_start_ = options.eager_start;
  cancels_requested_ = 0;
  // Nothing of the last run in the dump: no group parent, no last wait.
  parent_number_ = 0;
  wait_.what = nullptr;
  retake_spare_stack(fiber_.stack_slot(), number_);
  fiber_.restart();
}

// Out of line: a task that was given a name, or asked for its own, is rare.
[[gnu::noinline]] void TaskStateBase::clear_name() noexcept {
  if (name_.capacity() > 64) {
    name_ = std::string();  // a long name's memory is not kept for the next task
  } else {
    name_.clear();
  }
}

const std::string& TaskStateBase::name() const {
  if (name_.empty()) name_ = "Task-" + std::to_string(number_);
  return name_;
}

std::string TaskStateBase::describe() const { return "Task '" + name() + "'"; }

TaskStateBase::~TaskStateBase() {
  if (log_traceback_) [[unlikely]]
    report_never_retrieved();
}

// Out of line, so that the report's frame stays out of every task's end.
[[gnu::noinline]] void TaskStateBase::report_never_retrieved() noexcept {
  log_traceback_ = false;
  LoopCore::report(core_or_null(), {"Task exception was never retrieved", exception_, name()});
}

}  // namespace fiberloop::detail
