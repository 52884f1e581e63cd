// task_stack_label.cpp: tells the stack layer which task runs on a thread,
// so that an overflow in a Generator names the task that drove it. The
// stack layer knows no task; this is the one place that joins the two.
#include "fiberloop/detail/stack_placement.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop::detail {
namespace {

// Called from the overflow reporter's signal handler: the task's label, not
// its name(), which may build "Task-N" and so allocate.
StackLabel running_task_label() noexcept {
  const TaskStateBase* task = TaskStateBase::current();
  return task ? task->label() : StackLabel{};
}

// Before main(), so that a Generator overflowing on any thread is named.
[[maybe_unused]] const bool registered =
    (set_running_label_source(&running_task_label), true);

}  // namespace
}  // namespace fiberloop::detail
