#include "fiberloop/future.hpp"

#include <algorithm>

#include "fiberloop/event_loop.hpp"

namespace fiberloop::detail {

FutureStateBase::FutureStateBase(EventLoop& loop) : loop_(&loop) { loop.link_future(this); }

FutureStateBase::~FutureStateBase() {
  if (log_traceback_) report_unretrieved("Future exception was never retrieved");
  if (loop_) loop_->unlink_future(this);
}

void FutureStateBase::report_unretrieved(const char* message) noexcept {
  log_traceback_ = false;
  ExceptionContext context{message, exception_, {}};
  if (loop_) {
    loop_->call_exception_handler(context);
  } else {
    EventLoop::default_exception_handler(context);
  }
}

std::string FutureStateBase::describe() const { return "Future"; }

EventLoop& FutureStateBase::loop() const {
  if (!loop_) throw RuntimeError(describe() + " outlived its event loop");
  return *loop_;
}

void FutureStateBase::check_settable(const char* operation) const {
  if (done())
    throw InvalidStateError(std::string(operation) + "(): " + describe() + " is already done");
  loop();  // throws, before anything changes, once the loop is gone
}

void FutureStateBase::finish() {
  status_ = Status::finished;
  schedule_callbacks();
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
  loop();  // throws, before anything changes, once the loop is gone
  mark_cancelled(std::move(message));
  return true;
}

void FutureStateBase::mark_cancelled(std::string message) {
  status_ = Status::cancelled;
  cancel_message_ = std::move(message);
  schedule_callbacks();
}

void FutureStateBase::check_result() {
  switch (status_) {
    case Status::pending:
      throw InvalidStateError("result(): " + describe() + " is not done yet");
    case Status::cancelled:
      throw CancelledError(cancel_message_);
    case Status::finished:
      log_traceback_ = false;
      if (exception_) std::rethrow_exception(exception_);
  }
}

void FutureStateBase::check_not_taken() const {
  if (result_taken_) {
    throw InvalidStateError("result already taken: the move-only result of " + describe() +
                            " was moved out by an earlier await");
  }
}

std::exception_ptr FutureStateBase::exception() {
  if (status_ == Status::pending)
    throw InvalidStateError("exception(): " + describe() + " is not done yet");
  if (status_ == Status::cancelled) throw CancelledError(cancel_message_);
  log_traceback_ = false;
  return exception_;
}

std::exception_ptr FutureStateBase::waiter_exception() {
  if (status_ == Status::cancelled) return std::make_exception_ptr(CancelledError(cancel_message_));
  log_traceback_ = false;
  return exception_;
}

CallbackId FutureStateBase::add_done_callback(DoneCallback fn) {
  CallbackId id = next_callback_id_++;
  if (done()) {
    loop().call_soon([fn = std::move(fn), self = Ref(this)]() mutable { fn(*self); });
  } else if (!first_callback_ && more_callbacks_.empty()) {
    first_callback_.emplace(Callback{id, std::move(fn)});
  } else {
    more_callbacks_.push_back(Callback{id, std::move(fn)});
  }
  return id;
}

std::size_t FutureStateBase::remove_done_callback(CallbackId id) noexcept {
  if (first_callback_ && first_callback_->id == id) {
    first_callback_.reset();
    return 1;
  }
  auto it = std::find_if(more_callbacks_.begin(), more_callbacks_.end(),
                         [id](const Callback& c) { return c.id == id; });
  if (it == more_callbacks_.end()) return 0;
  more_callbacks_.erase(it);
  return 1;
}

void FutureStateBase::schedule_callbacks() {
  EventLoop& l = loop();
  Ref self(this);
  if (first_callback_) {
    l.call_soon([fn = std::move(first_callback_->fn), self]() mutable { fn(*self); });
    first_callback_.reset();
  }
  for (Callback& c : more_callbacks_)
    l.call_soon([fn = std::move(c.fn), self]() mutable { fn(*self); });
  more_callbacks_.clear();
}

void FutureStateBase::drop_callbacks() noexcept {
  first_callback_.reset();
  more_callbacks_.clear();
}

}  // namespace fiberloop::detail
