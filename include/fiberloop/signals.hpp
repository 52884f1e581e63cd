// signals.hpp: Unix signals as ordinary loop callbacks (asyncio's add_signal_handler).
#pragma once

#include <memory>
#include <utility>

#include "fiberloop/detail/loop_core.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/task.hpp"

namespace fiberloop {

// EventLoop::add_signal_handler(sig, fn, args...) runs fn(args...) as an
// ordinary callback, on the loop's thread, in the iteration after signal sig
// arrived: never in signal context, so it may do anything a callback may
// (cancel a task, set an Event, stop the loop); an exception it throws is
// reported as "Exception in callback". Signals that arrive together may be
// merged into one call, as the kernel merges a pending standard signal.
//
// While a handler is set, sig is blocked on the loop's thread and delivered
// through a signalfd the loop watches; its disposition is a tiny handler
// that passes it on to the loop's thread if it lands on a thread that does
// not block it (a thread started before, by the application). Threads of
// the library block asynchronous signals anyway. Removing the handler
// (remove_signal_handler, or closing the loop) restores the disposition and
// the thread's mask as they were; a signal that arrived but was not yet
// handled is dropped then, never given to the old disposition late.
//
// Adding a handler for a signal that has one replaces it. Once
// remove_signal_handler() returned (or a replacement was added), the old
// handler never runs again, even for a signal that was already read. One loop at a time
// handles a given signal in the process.
//
// Throws std::invalid_argument for a number that is not a signal, for
// SIGKILL and SIGSTOP (they cannot be caught), for the fault signals
// (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS: a fault is delivered to
// the faulting thread at once, a signalfd cannot take it) and for the two the
// C library reserves (32, 33); RuntimeError from a thread other than the
// loop's, on a closed loop, or for a signal another live loop handles;
// std::system_error if the kernel refuses (signalfd, sigaction).
//
// Example:
//   loop.add_signal_handler(SIGTERM, [&] { stopping.set(); });
template <class Fn, class... Args>
void EventLoop::add_signal_handler(int sig, Fn&& fn, Args&&... args) {
  set_signal_handler(sig, Callback(detail::LoopCore::bound(std::forward<Fn>(fn),
                                                           std::forward<Args>(args)...)));
}

namespace detail {

// CtrlC is fiberloop::run()'s SIGINT handling, asyncio.run's (3.11+): the
// first SIGINT cancels the main task, so every task's stack unwinds, and
// gives SIGINT back its default action, so a second one ends the process at
// once; a SIGINT once the main task is done (the shutdown) ends it at once.
// It installs nothing when SIGINT's disposition is not the default (the
// application ignores or handles it) or another loop handles SIGINT; a
// handler the main task adds for SIGINT replaces it.
class FIBERLOOP_API CtrlC {
 public:
  CtrlC(EventLoop& loop, AnyTask main);
  // interrupted() says whether a SIGINT cancelled the main task.
  bool interrupted() const noexcept;
  struct State;  // shared with the handler

 private:
  std::shared_ptr<State> state_;
};

}  // namespace detail
}  // namespace fiberloop
