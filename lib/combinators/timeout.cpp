#include "fiberloop/timeout.hpp"

#include "fiberloop/detail/waiters.hpp"

namespace fiberloop {
namespace {

AnyTask require_task() {
  if (auto* t = detail::running_task()) return AnyTask(t);
  throw RuntimeError("fiberloop::timeout() used outside a task: a timeout scope cancels its task");
}

}  // namespace

Timeout::Timeout(std::optional<double> when)
    : task_(require_task()),
      cancelling_(task_.cancelling()),
      uncaught_(std::uncaught_exceptions()) {
  reschedule(when);
}

Timeout timeout_at(std::optional<double> when) { return Timeout(when); }

Timeout timeout(std::optional<double> seconds) {
  std::optional<double> when;
  if (seconds) when = get_running_loop().time() + *seconds;
  return timeout_at(when);
}

void Timeout::reschedule(std::optional<double> when) {
  if (state_ != State::active) {
    throw RuntimeError(state_ == State::exited || state_ == State::expired
                           ? "Timeout::reschedule(): the scope has ended"
                           : "Timeout::reschedule(): the scope has expired already");
  }
  when_ = when;
  handle_.cancel();
  handle_ = Handle();
  if (!when) return;
  EventLoop& loop = task_.get_loop();
  // Due already: on the next iteration, as asyncio does.
  if (*when <= loop.time()) {
    handle_ = loop.call_soon([this] { on_timeout(); });
  } else {
    handle_ = loop.call_at(*when, [this] { on_timeout(); });
  }
}

void Timeout::on_timeout() {
  // Raised only at this scope's own depth: a destructor that waits inside
  // the scope while an exception unwinds it holds the expiry, as any
  // cancellation, until the unwinding is over.
  task_.state().request_cancel({}, uncaught_);
  state_ = State::expiring;
  handle_ = Handle();
}

bool Timeout::end(const std::exception_ptr& e) {
  if (state_ == State::exited || state_ == State::expired)
    throw RuntimeError("Timeout::exit(): the scope has ended already");
  if (auto* t = detail::running_task(); !t || AnyTask(t) != task_)
    throw RuntimeError("Timeout::exit(): called from another task than the one it limits");
  handle_.cancel();
  handle_ = Handle();
  if (state_ == State::expiring) {
    state_ = State::expired;
    // Only when no other cancellation came since the scope began is the
    // CancelledError ours to turn into TimeoutError.
    return task_.uncancel() <= cancelling_ && detail::is_cancellation(e);
  }
  state_ = State::exited;
  return false;
}

void Timeout::exit() { end(nullptr); }

void Timeout::exit(std::exception_ptr e) {
  if (!e) throw std::invalid_argument("Timeout::exit(e): null exception_ptr");
  if (end(e)) throw TimeoutError("the timeout expired");
  std::rethrow_exception(e);
}

Timeout::~Timeout() {
  if (state_ == State::exited || state_ == State::expired) return;
  handle_.cancel();
  bool was_expiring = state_ == State::expiring;
  if (was_expiring) task_.uncancel();
  state_ = was_expiring ? State::expired : State::exited;
  if (was_expiring && std::uncaught_exceptions() > uncaught_) {
    try {
      task_.get_loop().call_exception_handler(
          {"fiberloop::Timeout expired and was left by an exception without exit(e): "
           "its cancellation could not become TimeoutError",
           nullptr, task_.get_name()});
    } catch (...) {
    }
  }
}

}  // namespace fiberloop
