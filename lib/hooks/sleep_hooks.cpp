// sleep_hooks.cpp: nanosleep, clock_nanosleep, usleep and sleep. Inside a
// task they sleep on the loop's timers (so std::this_thread::sleep_for in
// ten thousand tasks takes one sleep's time).
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>

#include "libc_calls.hpp"
#include "loop_wait.hpp"

#define HOOK extern "C" __attribute__((visibility("default")))

namespace fiberloop::hooks {
namespace {

bool valid(const timespec* t) {
  return t && t->tv_sec >= 0 && t->tv_nsec >= 0 && t->tv_nsec < 1'000'000'000;
}

double seconds_of(const timespec& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

timespec timespec_of(double seconds) {
  if (seconds <= 0) return {0, 0};
  timespec t;
  t.tv_sec = static_cast<time_t>(seconds);
  t.tv_nsec = static_cast<long>((seconds - static_cast<double>(t.tv_sec)) * 1e9);
  return t;
}

// sleep_on_loop(seconds, left): 0, or the error with *left the time not
// slept (ECANCELED: the task was cancelled).
int sleep_on_loop(double seconds, double* left) {
  Deadline deadline = Deadline::after(seconds);
  if (sleep_for(seconds) == Outcome::ready) return 0;
  int error = errno;
  if (left) *left = *deadline.remaining();
  return error;
}

bool loop_clock(clockid_t clock) {
  return clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC || clock == CLOCK_BOOTTIME ||
         clock == CLOCK_TAI;
}

}  // namespace
}  // namespace fiberloop::hooks

using namespace fiberloop::hooks;

HOOK int nanosleep(const timespec* req, timespec* rem) {
  if (!valid(req) || !in_task()) return libc().nanosleep(req, rem);
  double left = 0;
  int error = sleep_on_loop(seconds_of(*req), &left);
  if (error == 0) return 0;
  if (rem) *rem = timespec_of(left);
  errno = error;
  return -1;
}

HOOK int clock_nanosleep(clockid_t clock, int flags, const timespec* req, timespec* rem) {
  if (!valid(req) || !loop_clock(clock) || (flags & ~TIMER_ABSTIME) || !in_task())
    return libc().clock_nanosleep(clock, flags, req, rem);
  double seconds = seconds_of(*req);
  if (flags & TIMER_ABSTIME) {
    timespec now;
    ::clock_gettime(clock, &now);
    seconds -= seconds_of(now);
    if (seconds <= 0) return 0;
  }
  double left = 0;
  int error = sleep_on_loop(seconds, &left);
  if (error != 0 && rem && !(flags & TIMER_ABSTIME)) *rem = timespec_of(left);
  return error;  // clock_nanosleep returns its error, errno untouched
}

HOOK int usleep(useconds_t us) {
  if (!in_task()) return libc().usleep(us);
  int error = sleep_on_loop(static_cast<double>(us) / 1e6, nullptr);
  if (error == 0) return 0;
  errno = error;
  return -1;
}

HOOK unsigned sleep(unsigned seconds) {
  if (!in_task()) return libc().sleep(seconds);
  double left = 0;
  if (sleep_on_loop(seconds, &left) == 0) return 0;
  return static_cast<unsigned>(std::ceil(left));  // what was not slept, as sleep(3) returns
}
