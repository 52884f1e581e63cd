// stall_watchdog.cpp: the monitor thread, its detection and its report.
#include "stall_watchdog.hpp"

#include "../base/async_signals_blocked.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "fiberloop/detail/timers.hpp"

namespace fiberloop::detail {
namespace {

// How long the monitor waits for the loop thread to answer the backtrace
// signal, and the loop thread for the monitor to be done with a stall.
constexpr int kAnswerTimeoutMs = 100;
constexpr auto kDetectionTimeout = std::chrono::seconds(1);

void write_all(int fd, const std::string& text) noexcept {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      return;
    }
  }
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f s", s);
  return buf;
}

}  // namespace

void StallWatchdog::set_threshold(double seconds) {
  if (seconds <= 0) {
    close();
    return;
  }
  threshold_ns_.store(static_cast<std::int64_t>(std::ceil(seconds * 1e9)),
                      std::memory_order_relaxed);
  if (watching()) return;  // the monitor reads the new threshold at its next tick
  prepare_thread_backtraces();
  AsyncSignalsBlocked blocked;
  monitor_ = std::thread([this] { monitor(); });
  ::pthread_setname_np(monitor_.native_handle(), "fiberloop-stall");
}

void StallWatchdog::close() noexcept {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  std::lock_guard lock(mutex_);
  stop_ = false;  // a later set_threshold() starts a new monitor
}

void StallWatchdog::monitor() noexcept {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    // A quarter of the threshold: a stall is seen within 1.25 thresholds.
    auto period = std::chrono::nanoseconds(
        std::max<std::int64_t>(threshold_ns_.load(std::memory_order_relaxed) / 4, 1'000'000));
    if (wake_.wait_for(lock, period, [this] { return stop_; })) break;
    lock.unlock();
    check();
    lock.lock();
  }
}

// check() claims the run in progress if it has lasted the threshold. A run
// already claimed, or none (the loop polls, or does not run), is no stall.
void StallWatchdog::check() noexcept {
  std::uint64_t word = run_.load(std::memory_order_acquire);
  if ((word & (kRunning | kClaimed)) != kRunning) return;
  // Read after the word: the start of that run, or of a later one (then
  // the claim below fails).
  std::int64_t elapsed = LoopCore::real_now_ns() - start_ns_.load(std::memory_order_relaxed);
  if (elapsed < threshold_ns_.load(std::memory_order_relaxed)) return;
  if (!run_.compare_exchange_strong(word, word | kClaimed, std::memory_order_acq_rel,
                                    std::memory_order_relaxed)) {
    return;  // the run ended meanwhile
  }
  detect(word | kClaimed, elapsed);
}

void StallWatchdog::detect(std::uint64_t claimed, std::int64_t elapsed_ns) noexcept {
  std::uint64_t run = claimed >> 2;
  std::string name;
  {
    std::lock_guard lock(mutex_);
    if (named_run_ == run) name = task_name_;
  }
  std::string trace;
  try {
    std::vector<void*> frames;
    switch (capture_thread_backtrace(tid_.load(std::memory_order_relaxed), run_, claimed, frames,
                                     kAnswerTimeoutMs)) {
      case BacktraceOutcome::taken:
        trace = symbolize(frames);
        break;
      case BacktraceOutcome::moved_on:
        trace = "  (no backtrace: the run ended before the loop thread answered the signal)\n";
        break;
      case BacktraceOutcome::silent:
        trace = "  (no backtrace: the loop thread did not answer its signal, SIGRTMIN+" +
                std::to_string(kBacktraceSignalOffset) + ", within " +
                std::to_string(kAnswerTimeoutMs) +
                " ms; a sanitizer may defer it, or the thread blocks it)\n";
        break;
    }
    std::string what = name.empty() ? std::string("a callback") : "Task '" + name + "'";
    write_all(
        STDERR_FILENO,
        "fiberloop: stall watchdog: " + what + " has held the loop thread for " +
            seconds(static_cast<double>(elapsed_ns) / 1e9) + " so far (stall threshold " +
            seconds(static_cast<double>(threshold_ns_.load(std::memory_order_relaxed)) / 1e9) +
            "); its backtrace:\n" + trace);
  } catch (...) {
    trace = "  (no backtrace: out of memory)\n";  // the strings above are all that can throw
  }
  {
    std::lock_guard lock(mutex_);
    detected_run_ = run;
    detected_backtrace_.swap(trace);
  }
  detected_.notify_all();
}

std::string StallWatchdog::stall_backtrace() {
  std::unique_lock lock(mutex_);
  std::uint64_t run = runs_;
  if (!detected_.wait_for(lock, kDetectionTimeout, [&] { return detected_run_ >= run; }))
    return "  (no backtrace: the watchdog's monitor was not done with the stall within 1 s)\n";
  return std::move(detected_backtrace_);
}

void StallWatchdog::told(void* self, const std::string& name) {
  auto* watchdog = static_cast<StallWatchdog*>(self);
  std::lock_guard lock(watchdog->mutex_);
  watchdog->named_run_ = watchdog->runs_;
  watchdog->task_name_ = name;
}

}  // namespace fiberloop::detail
