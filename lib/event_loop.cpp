#include "fiberloop/event_loop.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <limits>
#include <system_error>

#include "fiberloop/await.hpp"
#include "fiberloop/completer.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop {
namespace {

using detail::FutureStateBase;
using detail::HandleState;
using detail::IoEntry;
using detail::Ref;

thread_local EventLoop* running_loop = nullptr;

constexpr std::size_t kMinScheduledTimers = 100;         // asyncio's _MIN_SCHEDULED_TIMER_HANDLES
constexpr std::int64_t kMaxPollNs = 86'400'000'000'000;  // a day: asyncio's MAXIMUM_SELECT_TIMEOUT
constexpr std::int64_t kFarFuture = std::numeric_limits<std::int64_t>::max() / 2;

// seconds_to_ns_ceil(s) rounds up, so that a timer never fires early; it
// truncates and corrects rather than calling ceil(), a libm call on x86-64.
std::int64_t seconds_to_ns_ceil(double s) {
  double ns = s * 1e9;
  if (!(ns < static_cast<double>(kFarFuture))) [[unlikely]] {
    if (std::isnan(ns)) throw std::invalid_argument("timer delay or deadline is NaN");
    return kFarFuture;
  }
  if (ns <= -static_cast<double>(kFarFuture)) [[unlikely]]
    return -kFarFuture;
  auto whole = static_cast<std::int64_t>(ns);  // toward zero: the ceiling when negative
  return whole + (static_cast<double>(whole) < ns ? 1 : 0);
}

std::string describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (const CancelledError& ex) {
    return std::string("CancelledError: ") + ex.message();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

// RunningScope marks the loop as this thread's running loop for its lifetime.
class EventLoop::RunningScope {
 public:
  explicit RunningScope(EventLoop& loop) : loop_(loop) {
    loop.check_can_run();
    loop.running_ = true;
    loop.thread_id_ = std::this_thread::get_id();
    running_loop = &loop;
  }
  ~RunningScope() {
    loop_.running_ = false;
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

EventLoop::EventLoop() {
  poller_.watch(threadsafe_.fd(), Poller::kReadable, false, 0);  // tag 0: never an fd's entry
  link_ = Ref(new detail::LoopLink);
  link_->loop = this;
}

EventLoop::~EventLoop() {
  if (running_) {
    std::fputs("fiberloop: an EventLoop was destroyed while running\n", stderr);
    std::abort();
  }
  close();
  // Futures and sockets that outlive the loop must not call into it.
  link_->loop = nullptr;
}

double EventLoop::time() const noexcept { return static_cast<double>(now_ns()) / 1e9; }

std::int64_t EventLoop::now_ns() const noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t EventLoop::deadline_after(double delay) const {
  std::int64_t d = seconds_to_ns_ceil(delay);
  std::int64_t now = now_ns();
  return d > kFarFuture - now ? kFarFuture : now + d;
}

std::int64_t EventLoop::deadline_at(double when) { return seconds_to_ns_ceil(when); }

void EventLoop::throw_closed() { throw RuntimeError("Event loop is closed"); }

void EventLoop::check_can_run() const {
  check_closed();
  if (running_) throw RuntimeError("This event loop is already running");
  if (running_loop) throw RuntimeError("Cannot run the event loop while another loop is running");
}

void EventLoop::check_thread_slow() const {
  if (running_ && std::this_thread::get_id() != thread_id_) {
    throw RuntimeError(
        "Non-thread-safe operation invoked on an event loop other than the current one");
  }
}

void EventLoop::requeue_checks() {
  check_closed();
  check_thread();
  if (threadsafe_.pending()) drain_threadsafe();  // posted earlier: they run first
}

void EventLoop::requeue_slow(HandleState* h) {
  requeue_checks();
  push_ready(h);
}

void EventLoop::requeue_step_slow(HandleState* h) {
  requeue_checks();
  ready_.push_back(h);
}

void EventLoop::schedule_later(HandleState* h, double delay) {
  // Now + delay, read at the call as asyncio's call_later does.
  schedule_at(h, deadline_after(delay));
}

void EventLoop::schedule_at(HandleState* h, std::int64_t when_ns) {
  check_closed();
  check_thread();
  h->when_ns = when_ns;
  h->seq = timer_seq_++;
  h->in_heap = true;
  h->add_ref();
  scheduled_.push(h);
}

void EventLoop::call_soon_threadsafe(detail::InlineFunction<void(), 48> fn) {
  threadsafe_.post(std::move(fn));
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
  if (!running_) {  // called on its own: be the running loop for one iteration
    RunningScope scope(*this);
    iterate();
    return;
  }
  iterate();
}

// iterate() is run_once() for a running loop outside any callback. Inline,
// with run_ready() inside it: run_forever() then saves its registers once,
// not on every iteration.
inline void EventLoop::iterate() {
  iterating_ = true;
  ++iteration_;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{iterating_};
  if (!scheduled_.empty()) drop_cancelled_timers();
  std::int64_t timeout = poll_timeout_ns();
  if (timeout == 0 && io_.size() == 0) {
    // Nothing to poll: skip the syscall. Posts from other threads are
    // picked up through their flag instead of the eventfd.
    if (threadsafe_.pending()) drain_threadsafe();
  } else {
    poll_io(timeout);
  }
  if (!scheduled_.empty()) queue_due_timers();
  run_ready();
}

void EventLoop::drop_cancelled_timers() {
  if (scheduled_.size() > kMinScheduledTimers && timer_cancelled_count_ * 2 > scheduled_.size()) {
    scheduled_.remove_if([](HandleState* h) { return h->cancelled; },
                         [](HandleState* h) {
                           h->in_heap = false;
                           Ref<HandleState>::adopt(h);
                         });
    timer_cancelled_count_ = 0;
    return;
  }
  while (!scheduled_.empty() && scheduled_.front()->cancelled) {
    HandleState* h = scheduled_.pop();
    h->in_heap = false;
    --timer_cancelled_count_;
    Ref<HandleState>::adopt(h);
  }
}

std::int64_t EventLoop::poll_timeout_ns() const {
  if (!ready_.empty() || stopping_) return 0;
  if (scheduled_.empty()) return -1;
  std::int64_t wait = scheduled_.front()->when_ns - now_ns();
  return std::clamp<std::int64_t>(wait, 0, kMaxPollNs);
}

void EventLoop::poll_io(std::int64_t timeout_ns) {
  Poller::Event events[256];
  int n = poller_.wait(timeout_ns, events);
  for (int i = 0; i < n; ++i) {
    int fd = events[i].fd;
    if (fd == threadsafe_.fd() && events[i].tag == 0) {
      threadsafe_.clear_wakeup();
      drain_threadsafe();
      continue;
    }
    dispatch_io(events[i]);
  }
}

void EventLoop::dispatch_io(const Poller::Event& event) {
  IoEntry* entry = io_.find(event.fd);
  if (!entry || entry->tag != event.tag || !entry->registered) {
    orphan_event(event.fd, entry != nullptr);
    return;
  }
  if (entry->registered & Poller::kEdge) {
    // A waiting task is woken here, not through a callback that would run on
    // the next iteration: its step joins this iteration's ready batch.
    std::uint32_t ready = event.ready & (Poller::kReadable | Poller::kWritable);
    if (event.ready & Poller::kReadHangup) entry->hung_up |= Poller::kReadable;
    if (event.ready & Poller::kWriteHangup) entry->hung_up |= Poller::kWritable;
    for (std::uint32_t kind : {Poller::kReadable, Poller::kWritable}) {
      Ref<FutureStateBase>& waiter =
          kind == Poller::kReadable ? entry->read_waiter : entry->write_waiter;
      if ((ready & kind) && waiter && !waiter->done()) {
        Ref<FutureStateBase> w = std::move(waiter);
        ready &= ~kind;  // consumed by this wake-up
        w->finish();
      }
    }
    entry->ready |= ready;  // nobody waits: remembered for the next wait
    return;
  }
  if ((event.ready & Poller::kReadable) && entry->reader && !entry->reader->cancelled)
    push_ready(entry->reader.get());
  if ((event.ready & Poller::kWritable) && entry->writer && !entry->writer->cancelled)
    push_ready(entry->writer.get());
}

void EventLoop::orphan_event(int fd, bool has_entry) {
  // epoll reports a registration the table does not have. If the number
  // still names the registered file, deleting it is enough. Otherwise the fd
  // was closed while a dup kept its file open (or the number now names
  // another file): nothing can address that registration any more, and a
  // level-triggered one would spin the loop at 100% CPU forever, so the
  // epoll instance is rebuilt from the table.
  bool rebuilt = false;
  if (has_entry || poller_.unwatch(fd) != 0) {
    rebuild_poller();
    rebuilt = true;
  }
  if (debug_) {
    call_exception_handler(
        {"epoll reported fd " + std::to_string(fd) +
             ", which the loop no longer watches: it was closed before remove_reader/"
             "remove_writer/forget_fd while a dup kept its file open" +
             (rebuilt ? " (the loop rebuilt its epoll set to drop it)" : "") +
             ". Remove an fd from the loop before closing it.",
         nullptr,
         {}});
  }
}

void EventLoop::rebuild_poller() {
  poller_.rebuild();
  poller_.watch(threadsafe_.fd(), Poller::kReadable, false, 0);
  io_.for_each([this](int fd, IoEntry& entry) {
    if (!entry.registered) return;
    try {
      poller_.watch(fd, entry.registered, false, entry.tag);
    } catch (const std::system_error&) {
      // Closed behind the loop's back: no event can come for it now.
    }
  });
}

void EventLoop::drain_threadsafe() {
  threadsafe_.take(threadsafe_batch_);
  struct Clear {
    std::vector<Callback>& batch;
    ~Clear() { batch.clear(); }
  } clear{threadsafe_batch_};
  for (Callback& cb : threadsafe_batch_) {
    Ref<HandleState> h(new HandleState(this, std::move(cb)));
    push_ready(h.get());
  }
}

void EventLoop::queue_due_timers() {
  if (scheduled_.empty()) return;
  std::int64_t now = now_ns();
  while (!scheduled_.empty() && scheduled_.front()->when_ns <= now) {
    HandleState* h = scheduled_.pop();
    h->in_heap = false;
    if (h->cancelled) {
      --timer_cancelled_count_;
      Ref<HandleState>::adopt(h);
    } else {
      ready_.push_back(h);  // the heap's reference moves to the queue
    }
  }
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
// touched thousands of steps ago, and every line of it is a miss (see README
// "Fiber stacks"). At least kPrefetchDistance + 1 entries are queued.
inline void EventLoop::prefetch_ahead() const noexcept {
  __builtin_prefetch(ready_.at(kPrefetchDistance));
  if (const HandleState* h = ready_.at(kPrefetchDistance - 1); h->is_task_step()) {
    auto* entry = reinterpret_cast<const char*>(h);
    for (std::ptrdiff_t at = -kStateBefore; at < kStateAfter; at += 64)
      __builtin_prefetch(entry + at);
  }
  if (const HandleState* h = ready_.at(kPrefetchDistance - 3); h->is_task_step()) {
    if (auto* context = *static_cast<const char* const*>(h->warm)) {
      for (std::ptrdiff_t at = 0; at < kFrames; at += 64) __builtin_prefetch(context + at);
    }
  }
}

inline void EventLoop::run_next() {
  HandleState* next = ready_.pop_front();
  if (next->is_task_step()) {  // held without a reference (TaskStateBase::step_)
    if (debug_) {
      run_timed(*next);
    } else {
      next->run_step();
    }
    return;
  }
  Ref<HandleState> h = Ref<HandleState>::adopt(next);
  if (h->cancelled) return;
  if (debug_) {
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
  std::size_t ntodo = ready_.size();
  std::size_t i = ntodo >= kPrefetchQueue ? run_ready_prefetching(ntodo) : 0;
  for (; i < ntodo; ++i) run_next();
}

void EventLoop::run_timed(HandleState& h) {
  std::int64_t t0 = now_ns();
  std::string stepped;
  {
    detail::TaskStateBase::LastStepped watch(stepped);
    if (h.is_task_step()) {
      h.run_step();  // h may be gone after it
    } else {
      h.run();
    }
  }
  double took = static_cast<double>(now_ns() - t0) / 1e9;
  if (took >= slow_callback_duration_) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " took %.3f seconds", took);
    std::string what = stepped.empty() ? std::string("Executing <Handle>")
                                       : "Executing <Task '" + stepped + "' step>";
    call_exception_handler({what + buf, nullptr, stepped});
  }
}

void EventLoop::add_io(int fd, std::uint32_t kind, Callback cb) {
  check_closed();
  if (fd < 0)
    throw std::invalid_argument("add_reader/add_writer: invalid file descriptor " +
                                std::to_string(fd));
  IoEntry* entry = io_.find(fd);
  if (entry && (entry->registered & Poller::kEdge)) {
    throw RuntimeError("add_reader/add_writer: fd " + std::to_string(fd) +
                       " is in use by wait_readable/wait_writable (a Socket); forget_fd() it first");
  }
  std::uint32_t before = entry ? entry->registered : 0;
  std::uint32_t tag = next_io_tag_;
  // epoll hears of every add, even one that leaves the mask as it was: if fd
  // was closed and its number reused, epoll dropped it, and MOD's ENOENT
  // makes the poller add it again. A fresh tag disowns the events of any
  // registration left over from the number's previous file. Nothing is
  // recorded before epoll accepted the fd, so a bogus (huge) number costs
  // no memory.
  poller_.watch(fd, before | kind, before != 0, tag);
  if (++next_io_tag_ == 0) next_io_tag_ = 1;
  if (!entry) entry = &io_.insert(fd);
  entry->registered = before | kind;
  entry->tag = tag;
  Ref<HandleState> h(new HandleState(this, std::move(cb)));
  h->repeating = true;
  Ref<HandleState>& slot = kind == Poller::kReadable ? entry->reader : entry->writer;
  if (slot) slot->cancel();
  slot = std::move(h);
}

bool EventLoop::remove_io(int fd, std::uint32_t kind) {
  if (closed_) return false;
  IoEntry* entry = io_.find(fd);
  if (!entry || (entry->registered & Poller::kEdge)) return false;
  Ref<HandleState>& slot = kind == Poller::kReadable ? entry->reader : entry->writer;
  if (!slot) return false;
  std::uint32_t after = entry->registered & ~kind;
  if (after) {
    try {
      poller_.watch(fd, after, true, entry->tag);
    } catch (const std::system_error&) {
      // Closed behind our back; an orphaned registration is caught in poll.
    }
  } else {
    // EBADF/ENOENT: closed behind our back. The kernel dropped it, unless a
    // dup keeps the file open: then its events come back as orphans.
    poller_.unwatch(fd);
  }
  slot->cancel();
  slot.reset();
  entry->registered = after;
  if (!after) io_.erase(fd);
  return true;
}

namespace {

// still_hung_up(fd, kind) asks the kernel whether the hang-up or error
// reported earlier for this direction still holds (or the fd is ready
// anyway): a wait then returns at once, as an edge-triggered registration
// brings no new edge for a state that lasts. A TCP hang-up lasts for good;
// a datagram socket's error (EPOLLERR: an ICMP port-unreachable on a
// connected UDP socket) ends once a receive or send reports it. One poll(2),
// paid only by waits on a fd that was reported hung up.
bool still_hung_up(int fd, std::uint32_t kind) noexcept {
  pollfd p{fd, static_cast<short>(kind == Poller::kReadable ? (POLLIN | POLLRDHUP) : POLLOUT), 0};
  ++detail::syscall_counts().polls;
  int n = ::poll(&p, 1, 0);
  return n != 0;  // ready, hung up, in error, closed (POLLNVAL), or poll failed: don't wait
}

}  // namespace

void EventLoop::wait_io(int fd, std::uint32_t kind) {
  const char* what = kind == Poller::kReadable ? "wait_readable()" : "wait_writable()";
  detail::TaskStateBase::require_current(what);
  check_closed();
  if (fd < 0)
    throw std::invalid_argument(std::string(what) + ": invalid file descriptor " +
                                std::to_string(fd));
  IoEntry* entry = io_.find(fd);
  if (entry && !(entry->registered & Poller::kEdge)) {
    throw RuntimeError(std::string(what) + ": fd " + std::to_string(fd) +
                       " has add_reader/add_writer callbacks; remove them first");
  }
  if (!entry) {
    // Registered once, for both directions, edge-triggered: later waits on
    // this fd cost no epoll_ctl. The kernel reports the current state as a
    // first edge, so nothing that is ready already is missed.
    constexpr std::uint32_t mask = Poller::kReadable | Poller::kWritable | Poller::kEdge;
    std::uint32_t tag = next_io_tag_;
    poller_.watch(fd, mask, false, tag);
    if (++next_io_tag_ == 0) next_io_tag_ = 1;
    entry = &io_.insert(fd);
    entry->registered = mask;
    entry->tag = tag;
  }
  if (entry->hung_up & kind) {
    if (still_hung_up(fd, kind)) return;
    // The state ended: a transient error (EPOLLERR on a UDP socket, an ICMP
    // port-unreachable) that a receive or send has consumed. From now on
    // the fd waits for its next edge like any other.
    entry->hung_up &= ~kind;
  }
  if (entry->ready & kind) {
    entry->ready &= ~kind;
    return;
  }
  Ref<FutureStateBase>& slot = kind == Poller::kReadable ? entry->read_waiter : entry->write_waiter;
  if (slot && !slot->done()) {
    throw RuntimeError(std::string(what) + ": another task already waits on fd " +
                       std::to_string(fd));
  }
  Future<void> ready = create_future<void>();
  slot = Ref<FutureStateBase>(ready.state_ptr());
  // Cancelled, or unwound by close(): the table must not keep the waiter.
  struct Unregister {
    EventLoop& loop;
    int fd;
    std::uint32_t kind;
    FutureStateBase* waiter;
    ~Unregister() {
      if (IoEntry* e = loop.io_.find(fd)) {
        Ref<FutureStateBase>& s = kind == Poller::kReadable ? e->read_waiter : e->write_waiter;
        if (s.get() == waiter) s.reset();
      }
    }
  } unregister{*this, fd, kind, ready.state_ptr()};
  await(ready);
}

bool EventLoop::forget_fd(int fd) noexcept {
  IoEntry* entry = io_.find(fd);
  if (!entry) return false;
  if (entry->registered) poller_.unwatch(fd);
  if (entry->reader) entry->reader->cancel();
  if (entry->writer) entry->writer->cancel();
  Ref<FutureStateBase> waiters[2] = {std::move(entry->read_waiter), std::move(entry->write_waiter)};
  io_.erase(fd);
  for (Ref<FutureStateBase>& w : waiters) {
    if (!w || w->done()) continue;
    try {
      w->set_exception(std::make_exception_ptr(std::system_error(
          EBADF, std::generic_category(),
          "fd " + std::to_string(fd) + " was closed while a task waited on it")));
    } catch (...) {
      // The loop is gone or closing: the waiting task is being unwound anyway.
    }
  }
  return true;
}

void wait_readable(int fd) { get_running_loop().wait_readable(fd); }
void wait_writable(int fd) { get_running_loop().wait_writable(fd); }

void EventLoop::close() {
  if (running_) throw RuntimeError("Cannot close a running event loop");
  if (closed_ || closing_) return;
  closing_ = true;
  struct Closing {
    bool& flag;
    ~Closing() { flag = false; }
  } closing{closing_};
  abandon_tasks();
  if (bridge_) bridge_->close();  // completers and the default executor (completer.hpp)
  closed_ = true;
  checked_requeue_ = true;
  threadsafe_.close();
  drop_ready();
  while (!scheduled_.empty()) {
    HandleState* h = scheduled_.pop();
    h->in_heap = false;
    h->cancel();
    Ref<HandleState>::adopt(h);
  }
  timer_cancelled_count_ = 0;
  io_.for_each([this](int fd, IoEntry& entry) {
    if (entry.registered) poller_.unwatch(fd);
    if (entry.reader) entry.reader->cancel();
    if (entry.writer) entry.writer->cancel();
  });
  io_.clear();
}

void EventLoop::abandon_tasks() noexcept {
  // A task's queued step lives in the task: the queue is emptied before each
  // task goes, and after it (its unwinding may wake the others).
  drop_ready();
  while (tasks_) {
    Ref<detail::TaskStateBase> task(tasks_);
    task->abandon();
    drop_ready();
  }
}

void EventLoop::drop_ready() noexcept {
  while (!ready_.empty()) {
    HandleState* h = ready_.pop_front();
    if (!h->is_task_step()) Ref<HandleState>::adopt(h);  // may queue more: loop
  }
}

std::vector<AnyTask> EventLoop::all_tasks() const {
  std::vector<AnyTask> tasks;
  for (detail::TaskStateBase* t = tasks_; t; t = t->next_task_) {
    if (!t->done()) tasks.emplace_back(t);
  }
  return tasks;
}

void EventLoop::call_exception_handler(const ExceptionContext& context) noexcept {
  if (!exception_handler_) {
    default_exception_handler(context);
    return;
  }
  try {
    exception_handler_(*this, context);
  } catch (...) {
    default_exception_handler(
        {"Unhandled error in exception handler", std::current_exception(), {}});
    default_exception_handler(context);
  }
}

void EventLoop::default_exception_handler(const ExceptionContext& context) noexcept {
  std::string text = context.message;
  if (!context.task.empty()) text += "\ntask: " + context.task;
  if (context.exception) text += "\nexception: " + describe_exception(context.exception);
  text += '\n';
  std::fputs(text.c_str(), stderr);
}

}  // namespace fiberloop
