// stall_guard.hpp: a watchdog for tests whose failure mode is a loop that
// stops making progress (a task spinning without ever suspending, which no
// timer, wait_for or run() limit can interrupt).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <functional>
#include <thread>

// StallGuard watches the loop it is made on, from inside a task:
//   - on the loop, a ticker every 10 ms records the longest gap between two
//     ticks, in loop time: max_gap(), which a test asserts stays <= 1 s;
//   - on a thread, a watchdog sees the ticks stop. After `rescue_after`
//     seconds without one it calls `rescue` (from that thread: something that
//     unblocks the spin, e.g. sending the datagram a spinning receiver waits
//     for), again after each further `rescue_after`; after `fatal_after`
//     seconds it prints a message and ends the process, so a broken build
//     fails instead of hanging.
// Destroy it in the task that made it, before the loop stops.
class StallGuard {
 public:
  explicit StallGuard(fiberloop::EventLoop& loop, std::function<void()> rescue = {},
                      double rescue_after = 1.5, double fatal_after = 30.0)
      : loop_(loop), rescue_(std::move(rescue)), last_tick_(loop.time()) {
    beat();
    arm();
    watchdog_ = std::thread([this, rescue_after, fatal_after] {
      auto since_rescue = Clock::now();
      while (!stop_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto last = Clock::time_point(Clock::duration(beat_.load()));
        auto now = Clock::now();
        double idle = std::chrono::duration<double>(now - last).count();
        double since = std::chrono::duration<double>(now - std::max(last, since_rescue)).count();
        if (rescue_ && since > rescue_after) {
          ++rescues_;
          rescue_();
          since_rescue = now;
        }
        if (idle > fatal_after) {
          std::fprintf(stderr, "StallGuard: the loop made no progress for %.1f s; giving up\n",
                       idle);
          std::fflush(stderr);
          std::_Exit(3);
        }
      }
    });
  }
  StallGuard(const StallGuard&) = delete;
  StallGuard& operator=(const StallGuard&) = delete;
  ~StallGuard() {
    stop_.store(true);
    ticker_.cancel();
    watchdog_.join();
  }

  // max_gap() is the longest time, in seconds, the loop went without running
  // the ticker (now included).
  double max_gap() const { return std::max(max_gap_, loop_.time() - last_tick_); }
  // rescues() counts the watchdog's calls of `rescue`.
  int rescues() const { return rescues_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  void beat() { beat_.store(Clock::now().time_since_epoch().count()); }
  void arm() {
    ticker_ = loop_.call_later(0.01, [this] {
      double now = loop_.time();
      max_gap_ = std::max(max_gap_, now - last_tick_);
      last_tick_ = now;
      beat();
      arm();
    });
  }

  fiberloop::EventLoop& loop_;
  std::function<void()> rescue_;
  double last_tick_;
  double max_gap_ = 0;
  fiberloop::TimerHandle ticker_;
  std::atomic<Clock::rep> beat_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> rescues_{0};
  std::thread watchdog_;
};
