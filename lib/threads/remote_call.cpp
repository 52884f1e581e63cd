#include "fiberloop/submit.hpp"

namespace fiberloop::detail {

RemoteCallBase::Running::Running(RemoteCallBase& call) : call_(call) {
  call.running_ = current_task();
}

void RemoteCallBase::post_start() {
  add_ref();
  RemoteRef ref(this);
  try {
    target_inbox_->post([ref = std::move(ref)] { ref->start(); });
  } catch (const RuntimeError&) {
    throw RuntimeError("submit(): the target loop is closed");
  }
}

void RemoteCallBase::post_cancel() noexcept {
  add_ref();
  RemoteRef ref(this);
  try {
    target_inbox_->post([ref = std::move(ref)] { ref->cancel_running(); });
  } catch (...) {
    // Closed: the target's tasks were cancelled and unwound with it.
  }
}

void RemoteCallBase::start() noexcept {
  try {
    add_ref();
    RemoteRef self(this);
    // The handle is not kept: the loop keeps the task alive until it ends,
    // and the body registers itself for cancel requests while it runs.
    get_running_loop().create_task([self = std::move(self)] { self->run(); });
  } catch (...) {
    refuse(std::current_exception());
  }
}

void RemoteCallBase::cancel_running() noexcept {
  cancel_requested_ = true;
  if (!running_) return;  // not started yet (it checks the flag) or finished
  try {
    running_->cancel();
  } catch (...) {
    // cancel() allocates nothing for an empty message: unreachable in practice.
  }
}

}  // namespace fiberloop::detail
