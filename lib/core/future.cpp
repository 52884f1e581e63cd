#include "fiberloop/future.hpp"

#include <algorithm>


namespace fiberloop::detail {

void throw_empty_future() { throw InvalidStateError("operation on an empty Future handle"); }

void FutureStateBase::report_unretrieved(const char* message) noexcept {
  log_traceback_ = false;
  LoopCore::report(link_->core, {message, exception_, {}});
}

std::string FutureStateBase::describe() const { return "Future"; }

const std::string& FutureStateBase::cancel_message() const noexcept {
  static const std::string none;
  return extras_ ? extras_->cancel_message : none;
}

void FutureStateBase::set_cancel_message(std::string message) {
  if (message.empty() && !extras_) return;
  extras().cancel_message = std::move(message);
}

[[gnu::noinline]] void FutureStateBase::DeleteExtras::operator()(Extras* extras) const noexcept {
  delete extras;
}

FutureStateBase::Extras& FutureStateBase::extras() {
  if (!extras_) extras_.reset(new Extras);
  return *extras_;
}

void FutureStateBase::throw_outlived() const {
  throw RuntimeError(describe() + " outlived its event loop");
}

void FutureStateBase::throw_not_settable(const char* operation) const {
  if (done())
    throw InvalidStateError(std::string(operation) + "(): " + describe() + " is already done");
  core();  // throws, before anything changes, once the loop is gone
  throw InvalidStateError(std::string(operation) + "(): " + describe() + " cannot be set");
}

void FutureStateBase::set_exception(std::exception_ptr e) {
  check_settable("set_exception");
  if (!e) throw std::invalid_argument("set_exception(): null exception_ptr");
  exception_ = std::move(e);
  status_ = Status::finished;
  log_traceback_ = true;
  schedule_callbacks();
}

bool FutureStateBase::cancel(std::string message) {
  log_traceback_ = false;
  if (done()) return false;
  core();  // throws, before anything changes, once the loop is gone
  mark_cancelled(std::move(message));
  return true;
}

void FutureStateBase::mark_cancelled(std::string message) {
  status_ = Status::cancelled;
  set_cancel_message(std::move(message));
  schedule_callbacks();
}

void FutureStateBase::check_result_slow() {
  switch (status_) {
    case Status::pending:
      throw InvalidStateError("result(): " + describe() + " is not done yet");
    case Status::cancelled:
      throw CancelledError(cancel_message());
    case Status::finished:
      log_traceback_ = false;
      if (exception_) std::rethrow_exception(exception_);
  }
}

void FutureStateBase::throw_taken() const {
  throw InvalidStateError("result already taken: the move-only result of " + describe() +
                          " was moved out by an earlier await");
}

std::exception_ptr FutureStateBase::exception() {
  if (status_ == Status::pending)
    throw InvalidStateError("exception(): " + describe() + " is not done yet");
  if (status_ == Status::cancelled) throw CancelledError(cancel_message());
  log_traceback_ = false;
  return exception_;
}

std::exception_ptr FutureStateBase::waiter_exception_slow() {
  if (status_ == Status::cancelled) return std::make_exception_ptr(CancelledError(cancel_message()));
  log_traceback_ = false;
  return exception_;
}

CallbackId FutureStateBase::add_done_callback(DoneCallback fn) {
  CallbackId id = next_callback_id_++;
  add_callback(Callback{std::move(fn), id});
  return id;
}

void FutureStateBase::add_waiter_slow(Awaiter* task) {
  add_callback(Callback{{}, next_callback_id_++, task});
}

void FutureStateBase::add_callback(Callback c) {
  if (done()) {
    schedule(c);
  } else if (!first_callback_.id && (!extras_ || extras_->more_callbacks.empty())) {
    first_callback_ = std::move(c);
  } else {
    extras().more_callbacks.push_back(std::move(c));
  }
}

void FutureStateBase::remove_waiter(Awaiter* task) noexcept {
  if (first_waiter_ == task) {
    first_waiter_ = nullptr;
    return;
  }
  if (first_callback_.id && first_callback_.waiter == task) {
    first_callback_ = {};
    return;
  }
  if (!extras_) return;
  auto& more = extras_->more_callbacks;
  auto it = std::find_if(more.begin(), more.end(),
                         [task](const Callback& c) { return c.waiter == task; });
  if (it != more.end()) more.erase(it);
}

// schedule(c) is call_soon(c.fn, this), or the waiting task's step queued
// directly: the same FIFO position, without a handle and a callback hop.
void FutureStateBase::schedule(Callback& c) {
  if (c.waiter) {
    c.waiter->wakeup(*this);
  } else {
    core().schedule_soon([fn = std::move(c.fn), self = Ref(this)]() mutable { fn(*self); });
  }
}

std::size_t FutureStateBase::remove_done_callback(CallbackId id) noexcept {
  if (first_callback_.id && first_callback_.id == id) {
    first_callback_ = {};
    return 1;
  }
  if (!extras_) return 0;
  auto& more = extras_->more_callbacks;
  auto it = std::find_if(more.begin(), more.end(), [id](const Callback& c) { return c.id == id; });
  if (it == more.end()) return 0;
  more.erase(it);
  return 1;
}

void FutureStateBase::schedule_callbacks() {
  core();  // throws, before anything is taken, once the loop is gone
  Ref self(this);
  if (first_waiter_) wake_first_waiter();
  if (first_callback_.id) {
    Callback c = std::move(first_callback_);
    first_callback_ = {};
    schedule(c);
  }
  if (!extras_ || extras_->more_callbacks.empty()) return;
  for (Callback& c : extras_->more_callbacks) schedule(c);
  extras_->more_callbacks.clear();
}

void FutureStateBase::drop_callbacks() noexcept {
  first_waiter_ = nullptr;
  first_callback_ = {};
  if (extras_) extras_->more_callbacks.clear();
}

}  // namespace fiberloop::detail
