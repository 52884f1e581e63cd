// The readiness waits: a task parks on a future the I/O driver completes.
#include "fiberloop/await.hpp"
#include "fiberloop/event_loop.hpp"

namespace fiberloop {

void EventLoop::wait_io(int fd, std::uint32_t kind, std::source_location where,
                        detail::IoRegistration* reg) {
  const char* what = kind == Poller::kReadable ? "wait_readable()" : "wait_writable()";
  detail::require_task(what);
  detail::IoDriver::WaitSlot slot = io_.arm_wait(fd, kind, what, reg);
  if (!slot) return;  // ready, or hung up, already
  Future<void> ready = create_future<void>();
  *slot = detail::Ref<detail::FutureStateBase>(ready.state_ptr());
  detail::TaskStateBase::set_wait_arg(fd);
  try {
    detail::await_as(ready, what, where);
  } catch (...) {
    // Cancelled, or unwound by close(): the table must not keep the waiter.
    // (A wake-up took it out of the slot already.) Looked up again, not
    // through `slot`: close() may have freed the table meanwhile.
    io_.disarm_wait(fd, kind, ready.state_ptr());
    throw;
  }
}

void wait_readable(int fd, std::source_location where) {
  get_running_loop().wait_readable(fd, where);
}
void wait_writable(int fd, std::source_location where) {
  get_running_loop().wait_writable(fd, where);
}

}  // namespace fiberloop
