// detail/io_table.hpp: IoTable, the loop's record of the file descriptors it watches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
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
  // The step handle of the task in wait_readable() / wait_writable(), if
  // any: the wait's ParkedWait (held by no reference: the loop's list of
  // live tasks holds a parked task, and the wait withdraws it before the
  // task can go).
  HandleState* read_waiter = nullptr;
  HandleState* write_waiter = nullptr;
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

// IoRegistration is what a Socket keeps of its fd's entry after its first
// readiness wait, so that later waits find the entry without a table
// lookup. It is only a cache: valid while the entry is still present under
// the tag it was made with (forget_fd and a re-registration change that),
// and the table never moves or frees an entry before clear(). One loop's:
// whoever keeps one resets it when it moves to another loop.
struct IoRegistration {
  IoEntry* entry = nullptr;
  std::uint32_t tag = 0;

  IoEntry* get() const noexcept {
    return entry && entry->present && entry->tag == tag ? entry : nullptr;
  }
  void reset() noexcept { entry = nullptr; }
};

// IoTable maps fds to entries: pages of kPage entries for the numbers a
// process normally has (below kDenseLimit, a page made when a number in it
// first appears), a hash map beyond, so a single huge fd costs one node, not
// a table that size. An entry never moves and its memory is kept, emptied,
// when it is erased (a page or node is reused by the same number), so a
// pointer to one stays valid until clear(): that is what lets a Socket hold
// its IoRegistration instead of looking its fd up on every wait.
class FIBERLOOP_API IoTable {
 public:
  static constexpr int kDenseLimit = 65536;
  static constexpr int kPageBits = 6;  // 64 entries: one 4 KiB page
  static constexpr int kPage = 1 << kPageBits;

  // find(fd) is fd's entry, or null if fd is not in the table.
  IoEntry* find(int fd) noexcept {
    IoEntry* e = slot(fd);
    return e && e->present ? e : nullptr;
  }

  // insert(fd) is fd's entry, made empty if it was not there. fd >= 0; the
  // caller has checked fd with epoll first, so the number is a real one.
  IoEntry& insert(int fd);

  // erase(fd) empties fd's entry (and drops what its callbacks captured).
  void erase(int fd) noexcept;

  // size() counts the entries.
  std::size_t size() const noexcept { return count_; }

  // for_each(fn) calls fn(fd, entry) for every entry; fn must not insert or erase.
  template <class Fn>
  void for_each(Fn&& fn) {
    for (std::size_t page = 0; page < pages_.size(); ++page) {
      if (!pages_[page]) continue;
      for (int i = 0; i < kPage; ++i) {
        IoEntry& e = pages_[page][i];
        if (e.present) fn(static_cast<int>(page << kPageBits) + i, e);
      }
    }
    for (auto& [fd, e] : sparse_) {
      if (e.present) fn(fd, e);
    }
  }

  // clear() drops every entry and gives the memory back: every pointer to an
  // entry dangles from here on (the loop is closing).
  void clear() noexcept;

  // dense_capacity() is how many entries the pages hold (tests bound it).
  std::size_t dense_capacity() const noexcept {
    std::size_t made = 0;
    for (const auto& page : pages_) made += page != nullptr;
    return made * kPage;
  }

 private:
  // slot(fd) is the place fd's entry has (present or not), or null if none was made.
  IoEntry* slot(int fd) noexcept {
    if (fd < 0) return nullptr;
    if (fd < kDenseLimit) {
      auto page = static_cast<std::size_t>(fd) >> kPageBits;
      if (page >= pages_.size() || !pages_[page]) return nullptr;
      return &pages_[page][fd & (kPage - 1)];
    }
    auto it = sparse_.find(fd);
    return it == sparse_.end() ? nullptr : &it->second;
  }

  std::vector<std::unique_ptr<IoEntry[]>> pages_;
  // Nodes of an unordered_map never move; an erased number's node is kept
  // (memory bounded by the distinct numbers above kDenseLimit ever watched).
  std::unordered_map<int, IoEntry> sparse_;
  std::size_t count_ = 0;
};

}  // namespace fiberloop::detail
