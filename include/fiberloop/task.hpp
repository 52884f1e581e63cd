// task.hpp: Task<T>, a Future<T> driven by a function running on its own fiber.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "fiberloop/detail/task_state.hpp"
#include "fiberloop/future.hpp"

namespace fiberloop {

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

}  // namespace fiberloop
