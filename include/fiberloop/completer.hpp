// completer.hpp: Completer<T>, the one safe way to complete a Future from another thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "fiberloop/detail/inline_function.hpp"
#include "fiberloop/detail/ref.hpp"
#include "fiberloop/detail/threadsafe_queue.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"

namespace fiberloop {

class ThreadPoolExecutor;

namespace detail {

class CompleterBlock;

// ThreadBridge is a loop's link to other threads that may outlive it: the
// completers' way in (post), the registry of completers still pending, and
// the default executor. The loop owns one (made on first use) and closes it
// from close(); other threads reach it through a shared_ptr. Its posts go
// straight into the loop's inbox, which it shares: a post after the loop is
// closed or destroyed finds the inbox closed instead of a dangling loop.
class FIBERLOOP_API ThreadBridge final : public LoopExtension {
 public:
  using Callback = InlineFunction<void(), 48>;

  explicit ThreadBridge(EventLoop& loop) noexcept;
  ~ThreadBridge();
  ThreadBridge(const ThreadBridge&) = delete;
  ThreadBridge& operator=(const ThreadBridge&) = delete;

  // of(loop) is the loop's bridge, made on first use. Loop thread only;
  // throws RuntimeError if the loop is closed, and in debug mode when called
  // from a thread other than the running loop's.
  static std::shared_ptr<ThreadBridge> of(EventLoop& loop);

  // post(fn) is loop.call_soon_threadsafe(fn), callable from any thread at
  // any time: false (fn destroyed here) once the loop is closed or gone.
  bool post(Callback fn);

  // close() refuses later posts, shuts the default executor down (joining its
  // threads) and lets go of the futures of completers still pending. Loop
  // thread only (EventLoop::close() calls it).
  void close() noexcept override;
  // holds_time(): a completer still pending is a job in flight on some
  // thread, whose outcome virtual time must not jump past.
  bool holds_time() const noexcept override { return blocks_ != nullptr; }

  // default_executor() is the loop's thread pool, made on first use. Loop thread only.
  ThreadPoolExecutor& default_executor();

  // link / unlink keep the registry of pending completers. Loop thread only.
  void link(CompleterBlock* b) noexcept;
  void unlink(CompleterBlock* b) noexcept;

 private:
  std::shared_ptr<ThreadsafeQueue> inbox_;  // the loop's, shared: it outlives the loop
  // Touched by the loop thread only:
  CompleterBlock* blocks_ = nullptr;
  std::unique_ptr<ThreadPoolExecutor> executor_;
};

// CompleterBlock is the state a Completer shares with its loop. The loop side
// (future_, the registry links) is touched on the loop thread only; the
// outcome (value or exception) is written by the completing thread before it
// posts, and read by the loop thread after the post: the loop's
// call_soon_threadsafe mutex orders the two. The reference count is atomic:
// the last owner may be any thread.
class FIBERLOOP_API CompleterBlock {
 public:
  enum class Outcome : std::uint8_t { value, exception, cancelled, abandoned };

  // CompleterBlock(fut) takes a reference to fut and registers with the
  // bridge. Loop thread only. Throws InvalidStateError if fut is done.
  explicit CompleterBlock(FutureStateBase& fut);
  virtual ~CompleterBlock();
  CompleterBlock(const CompleterBlock&) = delete;
  CompleterBlock& operator=(const CompleterBlock&) = delete;

  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // post(outcome) hands the caller's reference to the loop, which will apply
  // the outcome. False if the loop is closed: the reference and the value are
  // dropped on this thread.
  bool post(Outcome outcome);

  std::exception_ptr exception_;  // the outcome, when it is an exception

 protected:
  virtual void deliver_value(FutureStateBase& fut) = 0;  // loop thread
  virtual void drop_value() noexcept = 0;

 private:
  friend class ThreadBridge;
  struct Delivery;
  void deliver();                 // loop thread: apply the outcome
  void detach_future() noexcept;  // loop thread: drop the future's reference

  std::atomic<std::uint32_t> refs_{2};  // the Completer's and the registry's
  std::shared_ptr<ThreadBridge> bridge_;
  FutureStateBase* future_;  // one reference; null once delivered or detached
  Outcome outcome_ = Outcome::abandoned;
  CompleterBlock* prev_ = nullptr;  // the bridge's registry
  CompleterBlock* next_ = nullptr;
};

template <class T>
class CompleterState final : public CompleterBlock {
 public:
  using CompleterBlock::CompleterBlock;
  std::optional<T> value;

 private:
  void deliver_value(FutureStateBase& fut) override {
    Future<T>(Ref<FutureStateBase>(&fut)).set_result(std::move(*value));
  }
  void drop_value() noexcept override { value.reset(); }
};

template <>
class CompleterState<void> final : public CompleterBlock {
 public:
  using CompleterBlock::CompleterBlock;

 private:
  void deliver_value(FutureStateBase& fut) override { Future<void>(Ref(&fut)).set_result(); }
  void drop_value() noexcept override {}
};

}  // namespace detail

// Completer<T> completes a Future<T> from any thread, without touching the
// future off its loop's thread: set_result() and set_exception() store the
// outcome and post it with call_soon_threadsafe; the loop thread applies it.
// Create it on the loop's thread, then move it to the worker. Writing
// `call_soon_threadsafe([fut, v] { fut.set_result(v); })` on a worker is a
// data race instead (copying and destroying a Future is not thread-safe).
//
// Example:
//   auto fut = loop.create_future<int>();
//   std::thread worker([c = fiberloop::Completer<int>(fut)]() mutable {
//     c.set_result(6 * 7);
//   });
//   int v = loop.run_until_complete(fut);  // 42
//   worker.join();
//
// Rules: a completer completes once. A completer destroyed without
// completing fails its future with RuntimeError ("Completer destroyed without
// completing the future"), as std::promise's broken_promise. An outcome that
// arrives after the future was cancelled on the loop side is dropped (as
// asyncio drops an executor's result for a cancelled future). Once the loop is
// closed, set_result() / set_exception() return false and drop the value;
// they never touch the closed (or destroyed) loop. Move-only; any method may
// be called from any thread, but one Completer from one thread at a time.
template <class T>
class Completer {
 public:
  // Completer() is empty: valid() is false.
  Completer() noexcept = default;

  // Completer(future) binds to a pending future. Call it on the future's
  // loop thread. Throws InvalidStateError if the future is done or empty,
  // RuntimeError if its loop is closed or gone (and, in debug mode, when
  // called from another thread while the loop runs).
  explicit Completer(const Future<T>& future) {
    if (!future.valid()) throw InvalidStateError("Completer(): empty Future handle");
    block_ = new detail::CompleterState<T>(*future.state_ptr());
  }

  Completer(Completer&& o) noexcept : block_(std::exchange(o.block_, nullptr)) {}
  Completer& operator=(Completer&& o) noexcept {
    if (this != &o) {
      abandon();
      block_ = std::exchange(o.block_, nullptr);
    }
    return *this;
  }
  Completer(const Completer&) = delete;
  Completer& operator=(const Completer&) = delete;

  // ~Completer(), on any thread: a completer that did not complete fails its
  // future (see the rules above).
  ~Completer() { abandon(); }

  // valid() is true until the completer completed (or was moved from).
  bool valid() const noexcept { return block_ != nullptr; }

  // set_result(v) completes the future with v. Returns false if the loop is
  // closed (v is then destroyed on this thread). Throws InvalidStateError on
  // an empty completer (completed already, or moved from).
  // clang-format off
  template <class V = T>
    requires(!std::is_void_v<V>)
  bool set_result(V value) {
    // clang-format on
    check("set_result");
    block_->value.emplace(std::move(value));  // a throwing move leaves the completer usable
    return std::exchange(block_, nullptr)->post(detail::CompleterBlock::Outcome::value);
  }
  // clang-format off
  template <class V = T>
    requires std::is_void_v<V>
  bool set_result() {
    // clang-format on
    check("set_result");
    return std::exchange(block_, nullptr)->post(detail::CompleterBlock::Outcome::value);
  }

  // set_exception(e) completes the future with e. Returns false if the loop
  // is closed. Throws InvalidStateError on an empty completer and
  // std::invalid_argument for a null e (the completer stays usable).
  bool set_exception(std::exception_ptr e) {
    if (!e) throw std::invalid_argument("Completer::set_exception(): null exception_ptr");
    check("set_exception");
    block_->exception_ = std::move(e);
    return std::exchange(block_, nullptr)->post(detail::CompleterBlock::Outcome::exception);
  }
  // clang-format off
  template <class E>
    requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
  bool set_exception(E&& e) {
    // clang-format on
    return set_exception(std::make_exception_ptr(std::forward<E>(e)));
  }

  // cancel() cancels the future, as a cancelled concurrent future cancels
  // the asyncio future chained to it: the work behind it was called off.
  // Returns false if the loop is closed. Throws InvalidStateError on an
  // empty completer.
  bool cancel() {
    check("cancel");
    return std::exchange(block_, nullptr)->post(detail::CompleterBlock::Outcome::cancelled);
  }

 private:
  void check(const char* operation) const {
    if (!block_)
      throw InvalidStateError(std::string("Completer::") + operation +
                              "(): the completer has completed already or is empty");
  }

  void abandon() noexcept {
    if (!block_) return;
    try {
      std::exchange(block_, nullptr)->post(detail::CompleterBlock::Outcome::abandoned);
    } catch (...) {
      // Out of memory while posting: the reference went with the failed post,
      // and the loop lets go of the future when it closes.
    }
  }

  detail::CompleterState<T>* block_ = nullptr;
};

}  // namespace fiberloop
