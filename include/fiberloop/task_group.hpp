// task_group.hpp: TaskGroup, asyncio.TaskGroup — structured concurrency.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiberloop/await.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop {

class TaskGroup;

namespace detail {

// GroupState is what the children's done-callbacks share with the group;
// it lives until the last of them ran.
struct FIBERLOOP_API GroupState {
  std::optional<AnyTask> parent;
  std::vector<std::exception_ptr> errors;
  Future<void> on_completed;
  bool exiting = false;
  bool aborting = false;
  bool parent_cancel_requested = false;

  // The children still running, in spawn order: a list threaded through a
  // vector of slots (freed slots are reused), so that a child's done-callback,
  // which knows its slot, unlinks it in O(1) and nothing allocates per child
  // beyond the vector's growth.
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  struct Slot {
    Ref<TaskStateBase> task;  // null: a free slot
    std::size_t prev = npos;
    std::size_t next = npos;  // in the free list too
  };
  std::vector<Slot> slots;
  std::size_t head = npos;
  std::size_t tail = npos;
  std::size_t free_slots = npos;
  std::size_t live = 0;

  bool empty() const noexcept { return live == 0; }
  // add(task) links a new child last and returns its slot.
  std::size_t add(TaskStateBase* task);
  // for_each(fn) calls fn(AnyTask) for the children still running, in spawn order.
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (std::size_t i = head; i != npos; i = slots[i].next) fn(AnyTask(slots[i].task.get()));
  }

  void abort();
  void on_task_done(std::size_t slot);
};

// register_child(group, task) tracks a new child: its end reaches the
// group through a done-callback that does not keep the group alive.
template <class T>
void register_child(const std::shared_ptr<GroupState>& group, const Task<T>& task) {
  std::size_t slot = group->add(static_cast<TaskStateBase*>(task.state_ptr()));
  std::weak_ptr<GroupState> weak = group;
  task.state_ptr()->add_done_callback([weak, slot](FutureStateBase&) {
    if (auto g = weak.lock()) g->on_task_done(slot);
  });
}
FIBERLOOP_API void check_can_spawn(const GroupState& group);

}  // namespace detail

// TaskGroup holds the tasks spawned in a task_group() scope. The scope ends
// only when every child has ended. The first child to fail cancels the
// others and the body; the scope then throws an ExceptionGroup with every
// failure. Only task_group() makes one.
class FIBERLOOP_API TaskGroup {
 public:
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // spawn(fn, args...) starts fn(args...) as a child task and returns it.
  // Throws RuntimeError once the group is shutting down (a child failed or
  // the body was cancelled) or finished.
  template <class Fn, class... Args>
  auto spawn(Fn&& fn, Args&&... args) {
    detail::check_can_spawn(*state_);
    auto task =
        state_->parent->get_loop().create_task(std::forward<Fn>(fn), std::forward<Args>(args)...);
    detail::register_child(state_, task);
    return task;
  }
  // spawn(options, fn, args...) names the child or sizes its stack.
  template <class Fn, class... Args>
  auto spawn(TaskOptions options, Fn&& fn, Args&&... args) {
    detail::check_can_spawn(*state_);
    auto task = state_->parent->get_loop().create_task(std::move(options), std::forward<Fn>(fn),
                                                       std::forward<Args>(args)...);
    detail::register_child(state_, task);
    return task;
  }

 private:
  template <class Body>
  friend auto task_group(Body&& body);
  TaskGroup();
  // exit(body_error) is asyncio's __aexit__: waits for every child and
  // throws what the scope must throw.
  void exit(std::exception_ptr body_error);
  // abandon() is a fiber unwound inside the scope: cancel the children.
  void abandon() noexcept;

  std::shared_ptr<detail::GroupState> state_;
};

// task_group(body) runs body(group) in the calling task, then waits for every
// task body spawned in the group, and returns body's result. If a child
// fails, the other children and the body are cancelled, and once all ended
// task_group() throws ExceptionGroup with every failure (the body's own
// exception included). If the calling task is cancelled from outside, the
// children are cancelled and CancelledError propagates once they ended
// (ExceptionGroup instead if some child failed). Throws RuntimeError outside
// a task.
//
// Example:
//   fiberloop::task_group([&](fiberloop::TaskGroup& g) {
//     g.spawn(download, "a");
//     g.spawn(download, "b");
//   });  // both downloads are done here
template <class Body>
auto task_group(Body&& body) {
  TaskGroup group;
  using R = std::invoke_result_t<Body&, TaskGroup&>;
  std::optional<std::conditional_t<std::is_void_v<R>, int, R>> result;
  std::exception_ptr error;
  try {
    if constexpr (std::is_void_v<R>) {
      body(group);
    } else {
      result.emplace(body(group));
    }
  } catch (const FiberUnwind&) {
    group.abandon();
    throw;
  } catch (...) {
    error = std::current_exception();
  }
  try {
    group.exit(error);
  } catch (const FiberUnwind&) {
    group.abandon();
    throw;
  }
  if constexpr (!std::is_void_v<R>) return R(std::move(*result));
}

}  // namespace fiberloop
