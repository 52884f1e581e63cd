#include "fiberloop/barrier.hpp"

#include <stdexcept>

namespace fiberloop {
namespace {

// BarrierLock holds the barrier's lock for a scope, as std::lock_guard does,
// except once the barrier is destroyed: the lock went with it.
class BarrierLock {
 public:
  BarrierLock(Condition& cond, const detail::Watch& alive, const char* call)
      : cond_(cond), alive_(alive) {
    try {
      cond_.acquire();
    } catch (const detail::WaitedOnDestroyed&) {
      throw detail::WaitedOnDestroyed("Barrier", call);
    }
  }
  BarrierLock(const BarrierLock&) = delete;
  BarrierLock& operator=(const BarrierLock&) = delete;
  ~BarrierLock() {
    if (!alive_.gone()) cond_.release();
  }

 private:
  Condition& cond_;
  const detail::Watch& alive_;
};

}  // namespace

Barrier::Barrier(std::size_t parties) : parties_(parties) {
  if (parties == 0) throw std::invalid_argument("Barrier: parties must be > 0");
}

std::size_t Barrier::wait(std::source_location where) {
  detail::Watch alive(watches_);
  BarrierLock locked(cond_, alive, "wait()");
  try {
    return wait_locked(alive, where);
  } catch (const detail::WaitedOnDestroyed&) {
    throw detail::WaitedOnDestroyed("Barrier", "wait()");  // not the inner Condition's
  }
}

std::size_t Barrier::wait_locked(const detail::Watch& alive, std::source_location where) {
  block(where);  // while the previous round drains or resets
  std::size_t index = count_++;
  std::exception_ptr error;
  try {
    if (index + 1 == parties_) {
      // The last to arrive releases the others and drains the barrier.
      state_ = State::draining;
      cond_.notify_all();
    } else {
      wait_released(where);
    }
  } catch (const FiberUnwind&) {
    if (!alive.gone()) {
      --count_;
      exit();
    }
    throw;
  } catch (...) {
    error = std::current_exception();
  }
  if (alive.gone()) detail::leave_destroyed(error, "Barrier", "wait()");
  --count_;
  exit();
  if (error) std::rethrow_exception(error);
  return index;
}

void Barrier::block(std::source_location where) {
  auto open = [this] { return state_ != State::draining && state_ != State::resetting; };
  cond_.wait_for_as(open, "Barrier.wait()", where);
  if (state_ == State::broken) throw BrokenBarrierError("Barrier aborted");
}

void Barrier::wait_released(std::source_location where) {
  auto released = [this] { return state_ != State::filling; };
  cond_.wait_for_as(released, "Barrier.wait()", where);
  if (state_ == State::broken || state_ == State::resetting)
    throw BrokenBarrierError("Abort or reset of barrier");
}

void Barrier::exit() {
  // The last task out lets in those waiting for the next round.
  if (count_ == 0) {
    if (state_ == State::resetting || state_ == State::draining) state_ = State::filling;
    cond_.notify_all();
  }
}

void Barrier::reset() {
  detail::Watch alive(watches_);
  BarrierLock locked(cond_, alive, "reset()");
  if (count_ > 0) {
    if (state_ != State::resetting) state_ = State::resetting;
  } else {
    state_ = State::filling;
  }
  cond_.notify_all();
}

void Barrier::abort() {
  detail::Watch alive(watches_);
  BarrierLock locked(cond_, alive, "abort()");
  state_ = State::broken;
  cond_.notify_all();
}

}  // namespace fiberloop
