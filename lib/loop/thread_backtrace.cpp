// thread_backtrace.cpp: another thread's backtrace, through a signal.
//
// The signalled thread's handler does only what is safe in a handler:
// backtrace() (libgcc_s already loaded), atomics, write(2) to an eventfd.
// Naming the frames (dladdr, demangling: malloc) is the caller's, later.
#include "thread_backtrace.hpp"

#include "../base/symbols.hpp"

#include <execinfo.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <system_error>

namespace fiberloop::detail {
namespace {

constexpr int kMaxFrames = 64;

// Slot is the one capture in flight. Static storage: a handler that runs
// late (a signal deferred past its timeout) never finds it gone.
struct Slot {
  std::atomic<std::uint64_t> request{0};   // the capture asked for; 0: none
  std::atomic<std::uint64_t> taken{0};     // the request a handler took (one per request)
  std::atomic<std::uint64_t> answered{0};  // the request whose frames are in
  std::atomic<pid_t> tid{0};
  std::atomic<const std::atomic<std::uint64_t>*> word{nullptr};
  std::atomic<std::uint64_t> expected{0};
  std::atomic<bool> still{false};
  std::atomic<int> depth{0};
  void* frames[kMaxFrames] = {};
  int wakeup = -1;  // an eventfd the handler writes once it answered
};
Slot slot;
std::mutex capture_mutex;
std::uint64_t last_request = 0;  // under capture_mutex

int backtrace_signal() noexcept { return SIGRTMIN + kBacktraceSignalOffset; }

// answer(sig) is the handler: it runs on the signalled thread, on whatever
// stack that thread was on (a fiber's: the frames are the task's).
void answer(int) {
  int saved_errno = errno;
  std::uint64_t request = slot.request.load(std::memory_order_acquire);
  if (request != 0 && slot.tid.load(std::memory_order_relaxed) == this_thread_tid() &&
      slot.taken.exchange(request, std::memory_order_acq_rel) != request) {
    slot.depth.store(::backtrace(slot.frames, kMaxFrames), std::memory_order_relaxed);
    const std::atomic<std::uint64_t>* word = slot.word.load(std::memory_order_relaxed);
    slot.still.store(
        word->load(std::memory_order_acquire) == slot.expected.load(std::memory_order_relaxed),
        std::memory_order_relaxed);
    slot.answered.store(request, std::memory_order_release);
    std::uint64_t one = 1;
    (void)!::write(slot.wakeup, &one, sizeof one);
  }
  errno = saved_errno;
}

void install_once() {
  void* warm[2];
  (void)::backtrace(warm, 2);
  slot.wakeup = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (slot.wakeup < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  struct sigaction sa {};
  sa.sa_handler = answer;
  // SA_RESTART: a system call the stalled thread is blocked in resumes after
  // the handler, as if nothing had happened. No SA_ONSTACK: the handler runs
  // on the interrupted stack, a fiber's, which backtrace() walks from there.
  sa.sa_flags = SA_RESTART;
  ::sigemptyset(&sa.sa_mask);
  if (::sigaction(backtrace_signal(), &sa, nullptr) != 0)
    throw std::system_error(errno, std::generic_category(), "sigaction");
}

}  // namespace

pid_t this_thread_tid() noexcept {
  constinit thread_local pid_t tid = 0;
  if (tid == 0) tid = static_cast<pid_t>(::syscall(SYS_gettid));
  return tid;
}

void prepare_thread_backtraces() {
  static std::once_flag once;
  std::call_once(once, install_once);
}

BacktraceOutcome capture_thread_backtrace(pid_t tid, const std::atomic<std::uint64_t>& word,
                                          std::uint64_t expected, std::vector<void*>& frames,
                                          int timeout_ms) {
  std::lock_guard lock(capture_mutex);
  std::uint64_t request = ++last_request;
  slot.tid.store(tid, std::memory_order_relaxed);
  slot.word.store(&word, std::memory_order_relaxed);
  slot.expected.store(expected, std::memory_order_relaxed);
  slot.request.store(request, std::memory_order_release);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (::syscall(SYS_tgkill, ::getpid(), tid, backtrace_signal()) == 0) {
    while (slot.answered.load(std::memory_order_acquire) != request) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{slot.wakeup, POLLIN, 0};
      (void)::poll(&p, 1, static_cast<int>(left.count()) + 1);
      std::uint64_t count;
      (void)!::read(slot.wakeup, &count, sizeof count);  // a late answer's count too
    }
  }
  slot.request.store(0, std::memory_order_release);
  if (slot.answered.load(std::memory_order_acquire) != request) return BacktraceOutcome::silent;
  if (!slot.still.load(std::memory_order_relaxed)) return BacktraceOutcome::moved_on;
  // Frames 0 and 1 are the handler and the kernel's signal trampoline: the
  // thread's own begin at the instruction the signal interrupted.
  int depth = slot.depth.load(std::memory_order_relaxed);
  frames.assign(slot.frames + std::min(depth, 2), slot.frames + depth);
  return BacktraceOutcome::taken;
}

std::string symbolize(const std::vector<void*>& frames) {
  std::string text;
  char line[64];
  Symbolizer symbols;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    // (Frame 0, the interrupted instruction, is no return address; one
    // byte before it, where Symbolizer looks, is still in its function.)
    Symbol symbol = symbols.lookup(frames[i]);
    std::snprintf(line, sizeof line, "  #%zu %p ", i, frames[i]);
    text += line;
    text += symbol.function ? symbol.function : "??";
    if (symbol.function) {
      std::snprintf(line, sizeof line, "+0x%zx", symbol.offset);
      text += line;
    }
    if (symbol.object) {
      std::snprintf(line, sizeof line, " (+0x%zx ", symbol.object_offset(frames[i]));
      text += line;
      text += symbol.object;
      text += ")";
    }
    text += "\n";
  }
  return text;
}

}  // namespace fiberloop::detail
