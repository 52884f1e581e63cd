#include "fiberloop/queue.hpp"

#include <stdexcept>

namespace fiberloop::detail {

void QueueCore::wake_up_next(Waiters& waiters) {
  while (!waiters.empty()) {
    Future<void> waiter = waiters.pop_front();
    if (!waiter.done()) {
      waiter.set_result();
      break;
    }
  }
}

void QueueCore::wait_for_room(std::source_location where) {
  spend_budget();  // before the check: a yield may change the answer
  while (full()) {
    if (shutdown_) throw QueueShutDown();
    require_task("Queue::put()");
    Future<void> putter = putters_.add();
    std::exception_ptr error = wait_on(putters_, putter, name_, "put()", "Queue.put()", where);
    if (error) {
      putter.cancel();          // in case it is not done yet
      putters_.remove(putter);  // a get_nowait() or shutdown() may have popped it
      // Woken by a get_nowait() but unable to take the room: pass it on.
      if (!full() && !putter.cancelled()) wake_up_next(putters_);
      std::rethrow_exception(error);
    }
  }
}

void QueueCore::wait_for_item(std::source_location where) {
  spend_budget();
  while (empty()) {
    if (shutdown_) throw QueueShutDown();
    require_task("Queue::get()");
    Future<void> getter = getters_.add();
    std::exception_ptr error = wait_on(getters_, getter, name_, "get()", "Queue.get()", where);
    if (error) {
      getter.cancel();
      getters_.remove(getter);
      // Woken by a put_nowait() but unable to take the item: pass it on.
      if (!empty() && !getter.cancelled()) wake_up_next(getters_);
      std::rethrow_exception(error);
    }
  }
}

void QueueCore::check_put() {
  if (shutdown_) throw QueueShutDown();
  if (full()) throw QueueFull();
}

void QueueCore::check_get() {
  if (empty()) {
    if (shutdown_) throw QueueShutDown();
    throw QueueEmpty();
  }
}

void QueueCore::after_put() {
  ++unfinished_tasks_;
  finished_.clear();
  wake_up_next(getters_);
}

void QueueCore::after_get() { wake_up_next(putters_); }

void QueueCore::task_done() {
  if (unfinished_tasks_ == 0) throw std::invalid_argument("task_done() called too many times");
  if (--unfinished_tasks_ == 0) finished_.set();
}

void QueueCore::join() {
  if (unfinished_tasks_ == 0) return;
  const char* name = name_;  // once the queue is destroyed, nothing of it may be read
  try {
    finished_.wait();
  } catch (const WaitedOnDestroyed&) {
    throw WaitedOnDestroyed(name, "join()");  // not "Event ... wait()": finished_ is ours
  }
}

void QueueCore::shutdown(bool immediate) {
  shutdown_ = true;
  if (immediate) {
    while (!empty()) {
      drop_one();
      if (unfinished_tasks_ > 0) --unfinished_tasks_;
    }
    if (unfinished_tasks_ == 0) finished_.set();
  }
  // Every waiter re-checks, and sees the shutdown.
  while (!getters_.empty()) {
    Future<void> getter = getters_.pop_front();
    if (!getter.done()) getter.set_result();
  }
  while (!putters_.empty()) {
    Future<void> putter = putters_.pop_front();
    if (!putter.done()) putter.set_result();
  }
}

}  // namespace fiberloop::detail
