// task_number.hpp: the numbers of tasks ("Task-N"), unique process-wide.
#pragma once

#include <atomic>

namespace fiberloop::detail {

// next_task_number() hands out numbers from a per-thread block of kBlock
// taken from one process-wide counter: one loop per core would otherwise
// bounce that counter's cache line between cores on every spawn. A program
// with one thread still numbers its tasks 1, 2, 3, ... as asyncio does; with
// several, each thread's tasks are numbered in order, in blocks.
inline unsigned long next_task_number() noexcept {
  constexpr unsigned long kBlock = 1024;
  static constinit std::atomic<unsigned long> taken{0};
  static constinit thread_local unsigned long next = 0;
  static constinit thread_local unsigned long end = 0;
  if (next == end) {
    next = taken.fetch_add(kBlock, std::memory_order_relaxed) + 1;
    end = next + kBlock;
  }
  return next++;
}

}  // namespace fiberloop::detail
