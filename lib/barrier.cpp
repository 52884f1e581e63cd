#include "fiberloop/barrier.hpp"

#include <mutex>
#include <stdexcept>

namespace fiberloop {

Barrier::Barrier(std::size_t parties) : parties_(parties) {
  if (parties == 0) throw std::invalid_argument("Barrier: parties must be > 0");
}

std::size_t Barrier::wait() {
  std::lock_guard guard(cond_);
  block();  // while the previous round drains or resets
  std::size_t index = count_++;
  std::exception_ptr error;
  try {
    if (index + 1 == parties_) {
      // The last to arrive releases the others and drains the barrier.
      state_ = State::draining;
      cond_.notify_all();
    } else {
      wait_released();
    }
  } catch (const FiberUnwind&) {
    --count_;
    exit();
    throw;
  } catch (...) {
    error = std::current_exception();
  }
  --count_;
  exit();
  if (error) std::rethrow_exception(error);
  return index;
}

void Barrier::block() {
  cond_.wait_for([this] { return state_ != State::draining && state_ != State::resetting; });
  if (state_ == State::broken) throw BrokenBarrierError("Barrier aborted");
}

void Barrier::wait_released() {
  cond_.wait_for([this] { return state_ != State::filling; });
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
  std::lock_guard guard(cond_);
  if (count_ > 0) {
    if (state_ != State::resetting) state_ = State::resetting;
  } else {
    state_ = State::filling;
  }
  cond_.notify_all();
}

void Barrier::abort() {
  std::lock_guard guard(cond_);
  state_ = State::broken;
  cond_.notify_all();
}

}  // namespace fiberloop
