// The readiness waits: a task parks in its fd's entry, with no future: the
// I/O driver queues its step when the fd is ready.
#include <cerrno>
#include <string>
#include <system_error>

#include "fiberloop/await.hpp"
#include "fiberloop/event_loop.hpp"

namespace fiberloop {
namespace {

// ReadinessWait is a parked readiness wait, in the waiting frame: what a
// cancel() needs to take the task's step back from the fd's entry.
struct ReadinessWait : detail::ParkedWait {
  detail::IoDriver* driver;
  int fd;
  std::uint32_t kind;
  detail::HandleState* step;
  std::uint32_t tag;       // the entry's registration when the wait began
  bool withdrawn = false;  // a cancel took the step back: no wake-up came
};

bool withdraw_readiness_wait(detail::ParkedWait& parked) noexcept {
  auto& wait = static_cast<ReadinessWait&>(parked);
  wait.withdrawn = wait.driver->disarm_wait(wait.fd, wait.kind, wait.step);
  return wait.withdrawn;
}

[[noreturn, gnu::noinline]] void throw_closed_while_waiting(int fd) {
  throw std::system_error(EBADF, std::generic_category(),
                          "fd " + std::to_string(fd) + " was closed while a task waited on it");
}

}  // namespace

void EventLoop::wait_io(int fd, std::uint32_t kind, std::source_location where,
                        detail::IoRegistration* reg) {
  const char* what = kind == Poller::kReadable ? "wait_readable()" : "wait_writable()";
  detail::TaskStateBase& task = detail::TaskStateBase::require_current(what);
  detail::IoRegistration looked_up;  // a wait on a bare fd: found for this wait only
  if (!reg) reg = &looked_up;
  detail::IoDriver::WaitSlot slot = io_.arm_wait(fd, kind, what, reg);
  if (!slot) return;  // ready, or hung up, already
  ReadinessWait wait{{&withdraw_readiness_wait}, &io_, fd, kind, task.step_handle(), reg->tag};
  *slot = wait.step;
  detail::TaskStateBase::set_wait_arg(fd);
  try {
    detail::TaskStateBase::park_current(wait, what, where);
  } catch (...) {
    // A cancel that came after the wake-up, or an unwinding: the entry must
    // not keep the step, nor lose the edge the wake-up took. Looked up
    // again, not through `slot`: close() may have freed the table meanwhile.
    if (!wait.withdrawn) io_.abandon_wait(fd, kind, wait.step, wait.tag);
    throw;
  }
  // forget_fd() (a close) wakes the wait by dropping the entry.
  if (!reg->get()) [[unlikely]]
    throw_closed_while_waiting(fd);
}

void wait_readable(int fd, std::source_location where) {
  get_running_loop().wait_readable(fd, where);
}
void wait_writable(int fd, std::source_location where) {
  get_running_loop().wait_writable(fd, where);
}

}  // namespace fiberloop
