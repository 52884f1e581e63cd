#include "fiberloop/wait.hpp"

#include "fiberloop/detail/waiters.hpp"

namespace fiberloop::detail {
namespace {

// WaitState outlives wait_core()'s frame: a completion already queued with
// call_soon when the waiter wakes still runs after wait_core() returned.
struct WaitState : RefCounted {
  Future<void> waiter;
  TimerHandle timeout;
  std::size_t counter;
  ReturnWhen return_when;

  void on_completion(FutureStateBase& f) {
    --counter;
    if (counter == 0 || return_when == ReturnWhen::first_completed ||
        (return_when == ReturnWhen::first_exception && f.has_exception())) {
      timeout.cancel();
      if (!waiter.done()) waiter.set_result();
    }
  }
};

}  // namespace

void wait_core(const std::vector<FutureStateBase*>& futures, std::optional<double> timeout,
               ReturnWhen return_when) {
  EventLoop& loop = get_running_loop();
  TaskStateBase::require_current("wait()");
  Ref<WaitState> state(
      new WaitState{{}, loop.create_future<void>(), {}, futures.size(), return_when});
  if (timeout) {
    state->timeout = loop.call_later(*timeout, [state] {
      if (!state->waiter.done()) state->waiter.set_result();
    });
  }
  std::vector<CallbackId> ids;
  ids.reserve(futures.size());
  for (FutureStateBase* f : futures) {
    ids.push_back(
        f->add_done_callback([state](FutureStateBase& done) { state->on_completion(done); }));
  }
  struct Cleanup {
    WaitState& state;
    const std::vector<FutureStateBase*>& futures;
    std::vector<CallbackId>& ids;
    ~Cleanup() {
      state.timeout.cancel();
      for (std::size_t i = 0; i < futures.size(); ++i) futures[i]->remove_done_callback(ids[i]);
    }
  } cleanup{*state, futures, ids};
  await(state->waiter);
}

void cancel_and_wait(FutureStateBase* fut) {
  EventLoop& loop = get_running_loop();
  Future<void> waiter = loop.create_future<void>();
  CallbackId id = fut->add_done_callback([waiter](FutureStateBase&) {
    if (!waiter.done()) waiter.set_result();
  });
  struct Cleanup {
    FutureStateBase* fut;
    CallbackId id;
    ~Cleanup() { fut->remove_done_callback(id); }
  } cleanup{fut, id};
  fut->cancel("");
  await(waiter);
}

struct AsCompletedCore::Shared {
  std::vector<Ref<FutureStateBase>> todo;
  std::vector<CallbackId> ids;
  std::deque<FutureStateBase*> done;  // null: the timeout's mark
  Future<void> waiter;                // set while next() waits
  TimerHandle timeout;

  void wake() {
    if (waiter.valid() && !waiter.done()) waiter.set_result();
  }
  void on_completion(FutureStateBase& f) {
    if (todo.empty()) return;  // the timeout came first
    for (std::size_t i = 0; i < todo.size(); ++i) {
      if (todo[i].get() == &f) {
        todo.erase(todo.begin() + static_cast<std::ptrdiff_t>(i));
        ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    }
    done.push_back(&f);
    if (todo.empty()) timeout.cancel();
    wake();
  }
  void on_timeout() {
    for (std::size_t i = 0; i < todo.size(); ++i) {
      todo[i]->remove_done_callback(ids[i]);
      done.push_back(nullptr);
    }
    todo.clear();
    ids.clear();
    wake();
  }
};

AsCompletedCore::AsCompletedCore(const std::vector<FutureStateBase*>& futures,
                                 std::optional<double> timeout)
    : shared_(std::make_shared<Shared>()), left_(futures.size()) {
  std::weak_ptr<Shared> weak = shared_;
  for (FutureStateBase* f : futures) {
    shared_->todo.emplace_back(f);
    shared_->ids.push_back(f->add_done_callback([weak](FutureStateBase& done) {
      if (auto s = weak.lock()) s->on_completion(done);
    }));
  }
  if (!futures.empty() && timeout) {
    shared_->timeout = get_running_loop().call_later(*timeout, [weak] {
      if (auto s = weak.lock()) s->on_timeout();
    });
  }
}

AsCompletedCore::~AsCompletedCore() {
  shared_->timeout.cancel();
  for (std::size_t i = 0; i < shared_->todo.size(); ++i) {
    shared_->todo[i]->remove_done_callback(shared_->ids[i]);
  }
}

FutureStateBase* AsCompletedCore::next() {
  while (shared_->done.empty()) {
    shared_->waiter = get_running_loop().create_future<void>();
    Future<void> w = shared_->waiter;
    try {
      await(w);
    } catch (...) {
      shared_->waiter = Future<void>();
      throw;
    }
    shared_->waiter = Future<void>();
  }
  FutureStateBase* f = shared_->done.front();
  shared_->done.pop_front();
  --left_;
  if (!f) throw TimeoutError("as_completed(): timed out");
  return f;
}

}  // namespace fiberloop::detail
