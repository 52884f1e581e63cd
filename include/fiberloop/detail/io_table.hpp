// detail/io_table.hpp: IoTable, the loop's record of the file descriptors it watches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "fiberloop/detail/ref.hpp"
#include "fiberloop/detail/syscall_counts.hpp"
#include "fiberloop/export.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/handle.hpp"

namespace fiberloop::detail {

// IoEntry is what the loop knows about one watched fd. An fd is watched in
// one of two ways, never both: level-triggered callbacks (add_reader /
// add_writer, as asyncio) or edge-triggered readiness waits (wait_readable /
// wait_writable), which stay registered until the fd is forgotten.
// One cache line each (64-byte aligned, as the dense vector lays them out):
// a wait and its wakeup touch one line per fd, not the two a straddling
// entry costs.
struct alignas(64) IoEntry {
  Ref<HandleState> reader;            // add_reader's callback
  Ref<HandleState> writer;            // add_writer's callback
  Ref<FutureStateBase> read_waiter;   // the task in wait_readable(), if any
  Ref<FutureStateBase> write_waiter;  // the task in wait_writable(), if any
  std::uint32_t registered = 0;       // the Poller mask epoll holds for this fd (0: none)
  // ready: edge mode only: readiness epoll reported while nobody waited,
  // kept for the next wait instead of being lost (edges are not repeated).
  std::uint32_t ready = 0;
  // hung_up: edge mode: the directions (Poller::kReadable / kWritable) for
  // which a hang-up, half-close or error was reported. Such a state brings
  // no further edge, so a wait in that direction asks the kernel (one
  // poll(2)) whether it still holds, and returns at once if it does (a TCP
  // hang-up holds for good; a datagram socket's error until it is read).
  std::uint32_t hung_up = 0;
  // tag tells this registration's events from those of an older one made
  // under the same number (a file closed while a dup kept it registered).
  std::uint32_t tag = 0;
  bool present = false;  // managed by IoTable
};
static_assert(sizeof(IoEntry) == 64, "an IoEntry is one cache line");

// IoTable maps fds to entries: a dense vector for the numbers a process
// normally has (below kDenseLimit, grown by doubling as they appear), a hash
// map beyond, so a single huge fd costs one node, not a table that size.
// Entries may move when another fd is inserted: never keep a pointer to one
// across an insert().
class FIBERLOOP_API IoTable {
 public:
  static constexpr int kDenseLimit = 65536;

  // find(fd) is fd's entry, or null if fd is not in the table.
  IoEntry* find(int fd) noexcept {
    if (fd < 0) return nullptr;
    if (fd < kDenseLimit) {
      if (static_cast<std::size_t>(fd) >= dense_.size()) return nullptr;
      IoEntry& e = dense_[static_cast<std::size_t>(fd)];
      return e.present ? &e : nullptr;
    }
    auto it = sparse_.find(fd);
    return it == sparse_.end() ? nullptr : &it->second;
  }

  // insert(fd) is fd's entry, made empty if it was not there. fd >= 0; the
  // caller has checked fd with epoll first, so the number is a real one.
  IoEntry& insert(int fd);

  // erase(fd) drops fd's entry (and what its callbacks captured).
  void erase(int fd) noexcept;

  // size() counts the entries.
  std::size_t size() const noexcept { return count_; }

  // for_each(fn) calls fn(fd, entry) for every entry; fn must not insert or erase.
  template <class Fn>
  void for_each(Fn&& fn) {
    for (std::size_t fd = 0; fd < dense_.size(); ++fd) {
      if (dense_[fd].present) fn(static_cast<int>(fd), dense_[fd]);
    }
    for (auto& [fd, e] : sparse_) fn(fd, e);
  }

  // clear() drops every entry and gives the memory back.
  void clear() noexcept;

  // dense_capacity() is how many slots the dense part holds (tests bound it).
  std::size_t dense_capacity() const noexcept { return dense_.size(); }

 private:
  std::vector<IoEntry> dense_;
  std::unordered_map<int, IoEntry> sparse_;
  std::size_t count_ = 0;
};

}  // namespace fiberloop::detail
