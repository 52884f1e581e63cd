// stall_watchdog.hpp: a monitor thread that sees one callback or task step
// hold its loop's thread too long, while it happens.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "fiberloop/event_loop.hpp"
#include "thread_backtrace.hpp"

namespace fiberloop::detail {

// StallWatchdog is a loop's stall watchdog (EventLoop::set_stall_threshold):
// the loop thread publishes each timed run (EventLoop::run_timed) in one
// word; a monitor thread, waking every threshold/4, claims a run that has
// lasted the threshold, takes the loop thread's backtrace (a signal,
// thread_backtrace.hpp) and writes a report to stderr at once. When the run
// ends, the loop thread sees the claim and reports the whole stall through
// the exception handler (the monitor never calls it: it is not
// thread-safe).
//
// The run word: (run number << 2) | kRunning | kClaimed. The loop sets it
// to running as a run begins and to idle as it ends (an exchange); the
// monitor claims a running word with a compare-exchange. So a run ends
// either unclaimed (a later claim fails: the word changed) or claimed (the
// loop's exchange sees it, waits for the monitor's detection and reports
// the end): never a report at detection without one at the end.
//
// Owner: a LoopExtension in ExtensionSlot::watchdog; close() joins the
// monitor. Only set_threshold() and the run calls are the loop thread's.
class StallWatchdog final : public LoopExtension {
 public:
  StallWatchdog() = default;
  ~StallWatchdog() override { close(); }
  StallWatchdog(const StallWatchdog&) = delete;
  StallWatchdog& operator=(const StallWatchdog&) = delete;

  // set_threshold(seconds) starts the monitor (seconds > 0) or stops and
  // joins it (0). Throws std::system_error if its thread cannot start.
  void set_threshold(double seconds);
  bool watching() const noexcept { return monitor_.joinable(); }
  void close() noexcept override;

  // begin_run(now_ns) publishes that a run began at now_ns on this thread.
  void begin_run(std::int64_t now_ns) noexcept {
    ++runs_;
    tid_.store(this_thread_tid(), std::memory_order_relaxed);
    start_ns_.store(now_ns, std::memory_order_relaxed);
    run_.store((runs_ << 2) | kRunning, std::memory_order_release);
  }
  // end_run() publishes that it ended; true if the monitor claimed it as a
  // stall (then the loop reports it, with stall_backtrace()).
  bool end_run() noexcept {
    return run_.exchange(runs_ << 2, std::memory_order_acq_rel) & kClaimed;
  }
  // stall_backtrace() is the symbolized backtrace the monitor took during
  // the stall that end_run() just reported, or a line saying why there is
  // none. It waits (bounded) for the monitor to be done with the stall.
  std::string stall_backtrace();
  // told(self, name) is LastStepped's hook: the loop thread hands the
  // monitor the name of the task that steps in the current run.
  static void told(void* self, const std::string& name);

 private:
  static constexpr std::uint64_t kRunning = 1, kClaimed = 2;
  void monitor() noexcept;
  void check() noexcept;
  void detect(std::uint64_t word, std::int64_t elapsed_ns) noexcept;

  // Written by the loop thread, read by the monitor.
  std::atomic<std::uint64_t> run_{0};
  std::atomic<std::int64_t> start_ns_{0};
  std::atomic<pid_t> tid_{0};
  std::uint64_t runs_ = 0;  // the loop thread's own count

  std::atomic<std::int64_t> threshold_ns_{0};
  std::thread monitor_;

  std::mutex mutex_;              // guards what follows
  std::condition_variable wake_;  // the monitor's tick, cut short by stop_
  std::condition_variable detected_;
  bool stop_ = false;
  std::uint64_t named_run_ = 0;  // the run the task name below belongs to
  std::string task_name_;
  std::uint64_t detected_run_ = 0;  // the last run the monitor is done with
  std::string detected_backtrace_;
};

}  // namespace fiberloop::detail
