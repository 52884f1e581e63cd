// loop_wait.hpp: how a hooked call waits — on the running loop, from the
// task that made it — and how a wait ends. Every hook's slow path is here;
// nothing here throws into the (perhaps C) code that made the call.
#pragma once

#include <poll.h>

#include <atomic>
#include <cstdint>
#include <optional>

namespace fiberloop::hooks {

// in_task() says whether a hooked call should wait on the loop: it is made
// by a task, on its loop's thread, and the task's fiber is not being
// unwound (a destructor then gets libc's blocking call: no wait could end).
bool in_task() noexcept;

// Outcome is how a wait ended; errno tells why for all but `ready`
// (EAGAIN, ECANCELED, or the error: EBADF for an fd closed meanwhile). A cancelled one leaves the task's
// cancellation requested (the next fiberloop wait raises CancelledError);
// the hooked call fails with ECANCELED.
enum class Outcome { ready, timed_out, cancelled, failed };

// Deadline: when a wait gives up, in the loop's time (nullopt: never).
// after(seconds) starts counting now; nullopt seconds is no deadline.
struct Deadline {
  std::optional<double> at;
  static Deadline after(std::optional<double> seconds);
  // remaining() is the time left (never negative), or nullopt for none.
  std::optional<double> remaining() const;
  bool passed() const { return at && *remaining() <= 0; }
};

// wait_one(fd, events, deadline) waits until fd has one of `events`
// (POLLIN/POLLOUT and their kin; an error or hang-up counts), by the loop's
// own registration of fd where it can make one, else through a poll set of
// its own. The caller checks with a poll of timeout 0 afterwards: a
// readiness report may be stale.
Outcome wait_one(int fd, short events, const Deadline& deadline) noexcept;
// wait_any(fds, n, deadline) waits until one of the fds may be ready.
Outcome wait_any(const pollfd* fds, nfds_t n, const Deadline& deadline) noexcept;
// sleep_for(seconds) sleeps on the loop's timers.
Outcome sleep_for(double seconds) noexcept;
// ready_now(fd, events) is a poll of timeout 0: whether fd is ready now.
bool ready_now(int fd, short events) noexcept;
// forget_registration(fd) drops the running loop's watch of fd when a hook
// made one: called before fd is closed or replaced by dup2/dup3.
void forget_registration(int fd) noexcept;
// spend_budget() counts a call that completed without waiting against the
// task's cooperative budget (it may yield, never throws; a cancellation
// stays requested). The caller has already done its work: nothing is lost.
void spend_budget() noexcept;

// What stats() reports (hooks.hpp). A constant-initialised global, not a
// function-local static: every wait counts, and would check a guard.
struct Counters {
  std::atomic<std::uint64_t> waits{0}, sleeps{0}, resolves{0}, cancelled{0};
};
extern Counters hook_counters;
inline Counters& counters() noexcept { return hook_counters; }

// keep_cancellation() is the catch of a CancelledError inside a hook:
// request the cancellation again (its count unchanged) so that the next
// wait outside C code raises it, and count it.
void keep_cancellation(const char* message) noexcept;

}  // namespace fiberloop::hooks
