// errors.hpp: the exceptions of fiberloop, named after asyncio's.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fiberloop/export.hpp"

namespace fiberloop {

// Error is the base of every fiberloop error except CancelledError.
class FIBERLOOP_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// RuntimeError reports API misuse: a closed or already running loop, await
// outside a task, a generator resumed while it runs.
class FIBERLOOP_API RuntimeError : public Error {
 public:
  using Error::Error;
};

// InvalidStateError: result() of a pending future, set_result() on a done one.
class FIBERLOOP_API InvalidStateError : public Error {
 public:
  using Error::Error;
};

// TimeoutError: an operation did not finish before its deadline.
class FIBERLOOP_API TimeoutError : public Error {
 public:
  using Error::Error;
};

// IncompleteReadError: the stream ended before `expected` bytes arrived;
// `partial` holds what did arrive (nothing is lost).
class FIBERLOOP_API IncompleteReadError : public Error {
 public:
  IncompleteReadError(std::string partial, std::optional<std::size_t> expected);
  std::string partial;
  std::optional<std::size_t> expected;
};

// LimitOverrunError: a separator was not found within the stream's limit; the
// bytes stay buffered and `consumed` says how many may be skipped.
class FIBERLOOP_API LimitOverrunError : public Error {
 public:
  LimitOverrunError(const std::string& message, std::size_t consumed);
  std::size_t consumed;
};

// QueueEmpty: get_nowait() on an empty queue.
class FIBERLOOP_API QueueEmpty : public Error {
 public:
  QueueEmpty() : Error("queue is empty") {}
};

// QueueFull: put_nowait() on a full queue.
class FIBERLOOP_API QueueFull : public Error {
 public:
  QueueFull() : Error("queue is full") {}
};

// CancelledError is thrown at the await point of a cancelled task.
// It deliberately does not derive from std::exception (asyncio made it a
// BaseException for the same reason): `catch (const std::exception&)` must
// not swallow a cancellation. A task may catch it and carry on.
class FIBERLOOP_API CancelledError {
 public:
  explicit CancelledError(std::string message = {}) : message_(std::move(message)) {}
  // message() is the text given to cancel(), possibly empty.
  const std::string& message() const noexcept { return message_; }
  const char* what() const noexcept {
    return message_.empty() ? "CancelledError" : message_.c_str();
  }

 private:
  std::string message_;
};

namespace detail {
// is_cancellation(e) tells whether e holds a CancelledError.
inline bool is_cancellation(const std::exception_ptr& e) {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const CancelledError&) {
    return true;
  } catch (...) {
    return false;
  }
}
}  // namespace detail

// KeyboardInterrupt is what fiberloop::run() throws after Ctrl-C (the first
// SIGINT) cancelled its main task and every task unwound. Like CancelledError
// (and Python's KeyboardInterrupt, a BaseException) it does not derive from
// std::exception: a `catch (const std::exception&)` reporting errors must not
// take an interrupt for one. The conventional ending is exit status 130:
//   int main() try { fiberloop::run(serve); } catch (const fiberloop::KeyboardInterrupt&) { return 130; }
class FIBERLOOP_API KeyboardInterrupt {
 public:
  static constexpr int kExitStatus = 130;  // 128 + SIGINT, what a shell reports
  const char* what() const noexcept { return "KeyboardInterrupt"; }
};

// FiberUnwind is thrown inside a fiber that is destroyed while suspended (a
// closed Generator, a task abandoned by a closing loop) so that its stack
// unwinds and RAII runs. Never swallow it: a `catch (...)` in a task body must
// rethrow, e.g. `catch (const fiberloop::FiberUnwind&) { throw; }`. Swallowing
// it, or waiting while it unwinds the fiber, aborts with fiberloop's message
// in every build. (Fiber raises it itself at the suspension point: Boost's
// forced_unwind, and its assertion in builds without NDEBUG, never occur.)
class FIBERLOOP_API FiberUnwind {};

// ExceptionGroup carries several failures at once: a TaskGroup throws one
// holding every child failure (and the body's own), in the order they happened.
class FIBERLOOP_API ExceptionGroup : public Error {
 public:
  ExceptionGroup(const std::string& message, std::vector<std::exception_ptr> exceptions);
  // exceptions() are the failures, never empty.
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }

 private:
  std::vector<std::exception_ptr> exceptions_;
};

// BrokenBarrierError: a Barrier was aborted or reset while a task waited on it.
class FIBERLOOP_API BrokenBarrierError : public Error {
 public:
  using Error::Error;
};

// QueueShutDown: put() or get() on a queue that was shut down (get() only
// once it is empty, unless the shutdown was immediate).
class FIBERLOOP_API QueueShutDown : public Error {
 public:
  QueueShutDown() : Error("queue is shut down") {}
};

namespace detail {
// WaitedOnDestroyed ends a wait whose primitive (a lock, queue, ...) was
// destroyed meanwhile: "<primitive> destroyed while a task was waiting in
// <call>". A RuntimeError for the user; its own type lets the composite
// primitives pass it through without touching themselves.
class FIBERLOOP_API WaitedOnDestroyed : public RuntimeError {
 public:
  WaitedOnDestroyed(const char* primitive, const char* call);
};
}  // namespace detail

}  // namespace fiberloop
