// detail/io_driver.hpp: IoDriver, the loop's phase that turns readiness into ready work.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fiberloop/detail/io_table.hpp"
#include "fiberloop/detail/loop_core.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/handle.hpp"
#include "fiberloop/poller.hpp"

namespace fiberloop::detail {

// IoDriver owns the poller and the table of watched fds (asyncio's
// selector_events, tokio's io driver). It knows handles, not tasks: an fd's
// readiness queues its add_reader/add_writer callback, or the step handle a
// readiness wait left in the entry (the wait itself, which needs a task,
// sits above it), with no future between: a wake-up touches the entry and
// the ready queue only. It also watches the core's inbox eventfd, so
// that a post from another thread ends the poll.
//
// Each registration carries a tag: epoll may still report a registration
// made under a number whose file was closed while a dup kept it open; the
// tag tells such an orphan from the fd's current one, and the driver
// rebuilds its epoll set to drop it (a level-triggered orphan would spin).
class FIBERLOOP_API IoDriver {
 public:
  using Callback = HandleState::Callback;

  explicit IoDriver(LoopCore& core);
  IoDriver(const IoDriver&) = delete;
  IoDriver& operator=(const IoDriver&) = delete;

  // poll(timeout_ns) is the iteration's I/O phase: wait up to timeout_ns
  // (-1: no limit) and queue what became ready. With nothing watched and no
  // time to wait it makes no syscall: posts are taken through their flag.
  void poll(std::int64_t timeout_ns) {
    if (timeout_ns == 0 && table_.size() == 0) {
      if (core_.posts_pending()) core_.take_posts();
      return;
    }
    poll_kernel(timeout_ns);
  }

  // add_callback(fd, kind, cb) is add_reader / add_writer (kind: one of
  // Poller::kReadable, kWritable); remove_callback undoes it.
  void add_callback(int fd, std::uint32_t kind, Callback cb);
  bool remove_callback(int fd, std::uint32_t kind);

  // WaitSlot is where a readiness wait leaves its task's step handle: null
  // when the fd is ready (or hung up) already and the wait returns at once.
  using WaitSlot = HandleState**;
  // arm_wait(fd, kind, what, reg) registers fd (once, edge-triggered, both
  // directions) and returns the slot for kind's waiter, checked free. Throws
  // as wait_readable() documents, naming `what`. With a registration `reg`
  // that still holds fd's entry, the entry is found without a table lookup;
  // otherwise reg is filled in for the next wait.
  WaitSlot arm_wait(int fd, std::uint32_t kind, const char* what, IoRegistration* reg = nullptr);
  // disarm_wait(fd, kind, waiter) empties kind's slot if it still holds
  // waiter, and says whether it did (false: the wait was woken already).
  bool disarm_wait(int fd, std::uint32_t kind, const HandleState* waiter) noexcept;
  // abandon_wait(fd, kind, waiter, tag) ends a wait that raised (a cancel
  // that came after its wake-up, an unwinding): it takes the step back if
  // the entry (registered under tag) still holds it; if a readiness wake-up
  // came first, the edge it consumed goes to the task waiting there now, or
  // is kept for the next wait, so that it is not lost.
  void abandon_wait(int fd, std::uint32_t kind, const HandleState* waiter,
                    std::uint32_t tag) noexcept;

  // forget(fd) drops everything held for fd and queues its waiters' steps;
  // their waits, finding the registration gone, raise EBADF.
  bool forget(int fd) noexcept;
  // clear() drops every registration (the loop is closing).
  void clear() noexcept;
  std::size_t watched() const noexcept { return table_.size(); }
  // awaited() counts the fds that something waits on: an add_reader /
  // add_writer callback, or a task in a readiness wait. A Socket that
  // stays registered between its waits does not count while idle.
  std::size_t awaited() noexcept;

 private:
  void poll_kernel(std::int64_t timeout_ns);
  void dispatch(const Poller::Event& event);
  void orphan_event(int fd, bool has_entry);
  IoEntry& entry_for_waits(int fd, const char* what);
  void rebuild_poller();
  std::uint32_t take_tag() noexcept;

  LoopCore& core_;
  Poller poller_;
  IoTable table_;  // every fd watched, registered in poller_
  std::uint32_t next_tag_ = 1;  // 0 is the inbox's: never an fd's entry
};

}  // namespace fiberloop::detail
