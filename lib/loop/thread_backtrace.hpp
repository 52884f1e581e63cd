// thread_backtrace.hpp: the backtrace of another thread of this process,
// taken by a signal that thread's handler answers (the stall watchdog's).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace fiberloop::detail {

// kBacktraceSignalOffset: the signal is SIGRTMIN + this. A program must not
// use that signal while a stall watchdog runs: its handler is replaced (once
// per process, and left in place).
inline constexpr int kBacktraceSignalOffset = 5;

// prepare_thread_backtraces() installs the signal's handler, once per
// process, and calls backtrace() once: its first call loads libgcc_s (a
// dlopen, and malloc), which a signal handler must not do. Throws
// std::system_error (sigaction, eventfd).
void prepare_thread_backtraces();

// BacktraceOutcome is how a capture went.
enum class BacktraceOutcome {
  taken,     // frames hold the thread's stack at the signal
  moved_on,  // the thread answered, but `word` no longer held `expected`
  silent,    // no answer within the timeout (TSan defers signals, a mask)
};

// capture_thread_backtrace(tid, word, expected, frames, timeout_ms) signals
// thread `tid` (tgkill) and waits up to timeout_ms for its handler, which
// records its backtrace and whether `word` still held `expected` then:
// a backtrace of what the caller watches, not of whatever came after. One
// capture at a time per process (the others wait). `word` must outlive the
// handler's run: the thread it belongs to is the one signalled.
BacktraceOutcome capture_thread_backtrace(pid_t tid, const std::atomic<std::uint64_t>& word,
                                          std::uint64_t expected, std::vector<void*>& frames,
                                          int timeout_ms);

// symbolize(frames) is one line per frame, "  #N 0xADDR function+0xOFF
// (object)", named through dladdr and demangled (an executable's own
// functions need -rdynamic to be named).
std::string symbolize(const std::vector<void*>& frames);

// this_thread_tid() is the calling thread's kernel id, cached per thread.
pid_t this_thread_tid() noexcept;

}  // namespace fiberloop::detail
