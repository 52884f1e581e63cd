// detail/child_watcher.hpp: a loop's children, reaped as they exit (subprocess.hpp).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>

#include "fiberloop/detail/child_state.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// ChildWatcher sees a loop's children exit without blocking the loop and
// reaps them, whether or not a Process still refers to them. Each child is
// watched through a pidfd where the kernel has pidfd_open (5.3+), else all
// through SIGCHLD on the loop's signalfd; FIBERLOOP_CHILD_WATCHER=pidfd or
// =sigchld picks one (for tests). close() kills the children still running
// (SIGKILL) and reaps them, as asyncio's transports kill theirs on close.
class ChildWatcher final : public LoopExtension {
 public:
  static ChildWatcher& of(EventLoop& loop);
  explicit ChildWatcher(EventLoop& loop) noexcept : loop_(loop) {}
  ~ChildWatcher() override;

  // before_spawn() readies the watcher before a child exists: the SIGCHLD
  // mode's hook must be in place before the child could exit.
  void before_spawn();
  // watch(child) takes the child just started.
  void watch(const std::shared_ptr<ChildState>& child);
  // uses_pidfd() is the mode, decided once per process (exported: the
  // tests check that FIBERLOOP_CHILD_WATCHER picked it).
  FIBERLOOP_API static bool uses_pidfd();

  void close() noexcept override;
  // holds_time(): a child still running may exit at any moment; virtual
  // time must not jump past that (in SIGCHLD mode no fd shows it).
  bool holds_time() const noexcept override { return !children_.empty(); }

 private:
  bool try_reap(ChildState& child) noexcept;  // true once reaped
  void finish(ChildState& child, int returncode) noexcept;
  void on_sigchld() noexcept;

  EventLoop& loop_;
  bool hooked_ = false;  // the SIGCHLD hook is set
  std::map<pid_t, std::shared_ptr<ChildState>> children_;
};

}  // namespace fiberloop::detail
