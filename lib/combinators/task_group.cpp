#include "fiberloop/task_group.hpp"

#include <algorithm>

#include "fiberloop/detail/waiters.hpp"

namespace fiberloop {
namespace detail {

std::size_t GroupState::add(TaskStateBase* task) {
  task->set_parent_number(parent->state().number());  // the task dump's "parent"
  std::size_t i;
  if (free_slots != npos) {
    i = free_slots;
    free_slots = slots[i].next;
  } else {
    i = slots.size();
    slots.emplace_back();
  }
  Slot& s = slots[i];
  s.task = Ref<TaskStateBase>(task);
  s.prev = tail;
  s.next = npos;
  (tail == npos ? head : slots[tail].next) = i;
  tail = i;
  ++live;
  return i;
}

void GroupState::abort() {
  aborting = true;
  for_each([](const AnyTask& t) {
    if (!t.done()) t.cancel();
  });
}

void GroupState::on_task_done(std::size_t slot) {
  Slot& s = slots[slot];
  AnyTask task(s.task.get());
  (s.prev == npos ? head : slots[s.prev].next) = s.next;
  (s.next == npos ? tail : slots[s.next].prev) = s.prev;
  s.task.reset();
  s.prev = npos;
  s.next = free_slots;
  free_slots = slot;
  --live;
  if (on_completed.valid() && empty() && !on_completed.done()) on_completed.set_result();
  if (task.cancelled()) return;
  std::exception_ptr e = task.exception();
  if (!e) return;
  errors.push_back(e);
  if (parent->done()) {
    task.get_loop().call_exception_handler(
        {"TaskGroup child failed after its parent task completed", e, task.get_name()});
    return;
  }
  if (!aborting && !parent_cancel_requested) {
    // Cancel the body as well, to stop whatever it waits on; exit() takes
    // this cancellation back (uncancel) so that it does not leak out.
    abort();
    parent_cancel_requested = true;
    parent->cancel();
  }
}

void check_can_spawn(const GroupState& group) {
  if (group.exiting && group.empty())
    throw RuntimeError("TaskGroup::spawn(): the group is finished");
  if (group.aborting) throw RuntimeError("TaskGroup::spawn(): the group is shutting down");
}

}  // namespace detail

TaskGroup::TaskGroup() : state_(std::make_shared<detail::GroupState>()) {
  auto* t = detail::TaskStateBase::current();
  if (!t) throw RuntimeError("task_group() called outside a task: it cannot find its parent task");
  state_->parent.emplace(t);
}

void TaskGroup::exit(std::exception_ptr body_error) {
  detail::GroupState& g = *state_;
  g.exiting = true;
  bool body_cancelled = detail::is_cancellation(body_error);
  std::exception_ptr propagate_cancellation = body_cancelled ? body_error : nullptr;
  if (body_error && !g.aborting) g.abort();  // the parent is cancelled, or the body failed

  while (!g.empty()) {
    if (!g.on_completed.valid()) g.on_completed = g.parent->get_loop().create_future<void>();
    std::exception_ptr e;
    try {
      detail::await_as(g.on_completed, "TaskGroup", std::source_location::current());
    } catch (const CancelledError&) {
      e = std::current_exception();
    }
    if (e && !g.aborting) {
      // The parent is cancelled from outside while the children still run.
      propagate_cancellation = e;
      g.abort();
    }
    g.on_completed = Future<void>();
  }

  if (g.parent_cancel_requested) {
    // The group cancelled its parent itself: take that back; a cancellation
    // left after that came from outside and propagates.
    if (g.parent->uncancel() == 0) propagate_cancellation = nullptr;
  }
  // A cancellation propagates unless there are errors: those take priority.
  if (propagate_cancellation && g.errors.empty()) std::rethrow_exception(propagate_cancellation);
  if (body_error && !body_cancelled) g.errors.push_back(body_error);
  if (!g.errors.empty()) {
    // Keep an outside cancellation pending on the parent: uncancel and
    // cancel again, so the count stays as it was.
    if (g.parent->cancelling()) {
      g.parent->uncancel();
      g.parent->cancel();
    }
    std::vector<std::exception_ptr> errors = std::move(g.errors);
    throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors));
  }
}

void TaskGroup::abandon() noexcept {
  state_->exiting = true;
  state_->aborting = true;
  state_->for_each([](const AnyTask& t) {
    if (!t.done()) t.cancel();
  });
}

}  // namespace fiberloop
