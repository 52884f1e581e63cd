// event_loop.cpp: the loop as a composition of its phases, and its life.
#include "fiberloop/event_loop.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "stall_watchdog.hpp"

namespace fiberloop {
namespace {

using detail::HandleState;
using detail::Ref;

thread_local EventLoop* running_loop = nullptr;

}  // namespace

// RunningScope marks the loop as this thread's running loop for its lifetime.
class EventLoop::RunningScope {
 public:
  explicit RunningScope(EventLoop& loop) : loop_(loop) {
    loop.check_can_run();
    loop.core_.set_running(true);
    running_loop = &loop;
  }
  ~RunningScope() {
    loop_.core_.set_running(false);
    loop_.stopping_ = false;
    running_loop = nullptr;
  }
  RunningScope(const RunningScope&) = delete;
  RunningScope& operator=(const RunningScope&) = delete;

 private:
  EventLoop& loop_;
};

EventLoop& get_running_loop() {
  if (!running_loop) throw RuntimeError("no running event loop");
  return *running_loop;
}

namespace detail {
void check_no_running_loop(const char* who) {
  if (running_loop)
    throw RuntimeError(std::string(who) + " cannot be called from a running event loop");
}
}  // namespace detail

EventLoop::EventLoop() : core_(*this) {}

EventLoop::~EventLoop() {
  if (core_.running()) {
    std::fputs("fiberloop: an EventLoop was destroyed while running\n", stderr);
    std::abort();
  }
  close();
}

double EventLoop::time() const noexcept { return static_cast<double>(core_.now_ns()) / 1e9; }

void EventLoop::check_can_run() const {
  core_.check_closed();
  if (core_.running()) throw RuntimeError("This event loop is already running");
  if (running_loop) throw RuntimeError("Cannot run the event loop while another loop is running");
}

void EventLoop::call_soon_threadsafe(detail::InlineFunction<void(), 48> fn) {
  core_.post(std::move(fn));
}

void EventLoop::run_forever() {
  RunningScope scope(*this);
  for (;;) {
    iterate();
    if (stopping_) break;
  }
}

void EventLoop::run_once() {
  if (iterating_)
    throw RuntimeError("run_once() called from inside a callback: loop iterations do not nest");
  if (!core_.running()) {  // called on its own: be the running loop for one iteration
    RunningScope scope(*this);
    iterate();
    return;
  }
  iterate();
}

// The clock stamp's period in busy iterations (iterate()).
constexpr std::uint64_t kStampEvery = 16;

// iterate() is one iteration, one call per phase (libuv's uv_run). Inline,
// with run_ready() inside it: run_forever() then saves its registers once,
// not on every iteration.
inline void EventLoop::iterate() {
  iterating_ = true;
  core_.next_iteration();
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{iterating_};
  timers_.drop_cancelled();
  bool slept = true;  // the poll may have slept: the clock moved
  if (core_.virtual_time()) [[unlikely]] {
    poll_virtual();
  } else {
    std::int64_t timeout = poll_timeout_ns();
    io_.poll(timeout);  // and the posts from other threads
    slept = timeout != 0;
  }
  // The clock is read for due timers, after a poll that may have slept, and
  // on every kStampEvery-th iteration: a busy iteration without timers pays
  // no clock read, and a wait's recorded start (the task dump) is late by at
  // most that many busy iterations.
  if (slept || !timers_.empty() || core_.iteration() % kStampEvery == 0) core_.stamp_iteration();
  timers_.queue_due();
  run_ready();
}

std::int64_t EventLoop::poll_timeout_ns() const {
  if (!core_.ready().empty() || stopping_) return 0;
  return timers_.timeout_ns();
}

// A ready queue this long gets prefetched for, this many entries ahead.
constexpr std::size_t kPrefetchQueue = 64;
constexpr std::size_t kPrefetchDistance = 5;
// What a step touches around its entry (the task state it is part of, and
// the fiber's entry object just below it), and above its fiber's saved
// context (the frames of the wait it returns through), in bytes.
constexpr std::ptrdiff_t kStateBefore = 256, kStateAfter = 512, kFrames = 1024;

// prefetch_ahead() starts loading what the steps a few places ahead in the
// ready queue will touch: first the entry, then (once that has arrived) the
// rest of its task state, then the frames above its fiber's saved context.
// With thousands of tasks in flight, each step lands on a stack page last
// touched thousands of steps ago, and every line of it is a miss
// (docs/stacks.md; the figures are in docs/performance.md). At least
// kPrefetchDistance + 1 entries are queued.
inline void EventLoop::prefetch_ahead() const noexcept {
  __builtin_prefetch(core_.ready().at(kPrefetchDistance));
  if (const HandleState* h = core_.ready().at(kPrefetchDistance - 1); h->is_task_step()) {
    auto* entry = reinterpret_cast<const char*>(h);
    for (std::ptrdiff_t at = -kStateBefore; at < kStateAfter; at += 64)
      __builtin_prefetch(entry + at);
  }
  if (const HandleState* h = core_.ready().at(kPrefetchDistance - 3); h->is_task_step()) {
    if (auto* context = *static_cast<const char* const*>(h->warm)) {
      for (std::ptrdiff_t at = 0; at < kFrames; at += 64) __builtin_prefetch(context + at);
    }
  }
}

inline void EventLoop::run_next() {
  HandleState* next = core_.ready().pop_front();
  if (next->is_task_step()) {  // held without a reference (TaskStateBase::step_)
    if (core_.instrumented()) {
      run_timed(*next);
    } else {
      next->run_step();
    }
    return;
  }
  Ref<HandleState> h = Ref<HandleState>::adopt(next);
  if (h->cancelled) return;
  if (core_.instrumented()) {
    run_timed(*h);
  } else {
    h->run();
  }
}

// run_ready_prefetching(ntodo) runs a long batch, prefetching ahead, up to
// its last kPrefetchDistance entries; it returns how many it ran. Out of
// line: the short batch of an ordinary iteration runs inside run_once()
// and pays nothing for it.
[[gnu::noinline]] std::size_t EventLoop::run_ready_prefetching(std::size_t ntodo) {
  std::size_t i = 0;
  for (; i + kPrefetchDistance < ntodo; ++i) {
    prefetch_ahead();
    run_next();
  }
  return i;
}

inline void EventLoop::run_ready() {
  // Only what was ready when this iteration began: callbacks scheduled by
  // these callbacks wait for the next iteration.
  std::size_t ntodo = core_.ready().size();
  std::size_t i = ntodo >= kPrefetchQueue ? run_ready_prefetching(ntodo) : 0;
  for (; i < ntodo; ++i) run_next();
}

// run_timed(h) is a run in debug mode or under the stall watchdog: timed,
// the task that steps named, and published to the watchdog's monitor.
void EventLoop::run_timed(HandleState& h) {
  detail::StallWatchdog* watchdog = watchdog_;  // set_stall_threshold(0) may null it meanwhile
  std::int64_t t0 = detail::LoopCore::real_now_ns();
  std::string stepped;
  bool stalled = false;
  {
    detail::TaskStateBase::LastStepped watch(
        stepped, watchdog ? &detail::StallWatchdog::told : nullptr, watchdog);
    struct Published {  // the run ends for the monitor even if it throws
      detail::StallWatchdog* watchdog;
      bool& stalled;
      ~Published() {
        if (watchdog) stalled = watchdog->end_run();
      }
    } published{watchdog, stalled};
    if (watchdog) watchdog->begin_run(t0);
    if (h.is_task_step()) {
      h.run_step();  // h may be gone after it
    } else {
      h.run();
    }
  }
  double took = static_cast<double>(detail::LoopCore::real_now_ns() - t0) / 1e9;
  if (stalled) {
    report_stall(stepped, took, watchdog->stall_backtrace());
  } else if (core_.debug() && took >= slow_callback_duration_) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " took %.3f seconds", took);
    std::string what = stepped.empty() ? std::string("Executing <Handle>")
                                       : "Executing <Task '" + stepped + "' step>";
    call_exception_handler({what + buf, nullptr, stepped});
  }
}

void EventLoop::report_stall(const std::string& stepped, double took,
                             const std::string& backtrace) {
  char buf[128];
  std::snprintf(buf, sizeof buf,
                " took %.3f seconds; it stalled the loop (stall threshold %.3f s). Its "
                "backtrace during the stall:\n",
                took, stall_threshold());
  std::string what = stepped.empty() ? std::string("Executing <Handle>")
                                     : "Executing <Task '" + stepped + "' step>";
  call_exception_handler({what + buf + backtrace, nullptr, stepped});
}

void EventLoop::set_debug(bool enabled) noexcept {
  core_.set_debug(enabled);
  if (stall_threshold_set_) return;
  try {
    apply_stall_threshold();
  } catch (const std::exception& e) {
    call_exception_handler({std::string("set_debug(): the stall watchdog did not start: ") +
                                e.what(),
                            std::current_exception(), {}});
  }
}

void EventLoop::set_stall_threshold(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds))
    throw std::invalid_argument("set_stall_threshold(): seconds must be finite and >= 0 (0: off)");
  if (seconds > 0) core_.check_closed();
  stall_threshold_ = seconds;
  stall_threshold_set_ = true;
  apply_stall_threshold();
}

// apply_stall_threshold() makes the watchdog watch at stall_threshold(), or
// stops it; the watchdog stays in its slot (a run in progress holds it).
void EventLoop::apply_stall_threshold() {
  auto& slot = extension(detail::ExtensionSlot::watchdog);
  double threshold = core_.closed() ? 0.0 : stall_threshold();
  if (threshold > 0 && !slot) slot = std::make_shared<detail::StallWatchdog>();
  auto* watchdog = static_cast<detail::StallWatchdog*>(slot.get());
  if (watchdog) watchdog->set_threshold(threshold);
  watchdog_ = watchdog && watchdog->watching() ? watchdog : nullptr;
  core_.set_watched(watchdog_ != nullptr);
}

void EventLoop::close() {
  if (core_.running()) throw RuntimeError("Cannot close a running event loop");
  if (core_.closed() || closing_) return;
  closing_ = true;
  struct Closing {
    bool& flag;
    ~Closing() { flag = false; }
  } closing{closing_};
  abandon_tasks();
  for (auto& extension : extensions_) {
    if (extension) extension->close();
  }
  watchdog_ = nullptr;
  core_.set_watched(false);
  core_.mark_closed();
  core_.drop_ready();
  timers_.clear();
  io_.clear();
}

void EventLoop::abandon_tasks() noexcept {
  // A task's queued step lives in the task: the queue is emptied before each
  // task goes, and after it (its unwinding may wake the others).
  core_.drop_ready();
  while (detail::LiveTask* live = core_.first_live()) {
    Ref<detail::TaskStateBase> task(&detail::TaskStateBase::of(*live));
    task->abandon();
    FIBERLOOP_ASSERT(core_.first_live() != live, "an abandoned task stayed on the live list");
    core_.drop_ready();
  }
}

std::vector<AnyTask> EventLoop::all_tasks() const {
  std::vector<AnyTask> tasks;
  for (detail::LiveTask* t = core_.first_live(); t; t = t->next_live) {
    detail::TaskStateBase& task = detail::TaskStateBase::of(*t);
    if (!task.done()) tasks.emplace_back(&task);
  }
  // The live list is newest first; asyncio lists (and its run() cancels)
  // oldest first.
  std::reverse(tasks.begin(), tasks.end());
  return tasks;
}

}  // namespace fiberloop
