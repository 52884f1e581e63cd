// task_number.hpp: the counter that numbers tasks ("Task-N"), process-wide.
#pragma once

#include <atomic>

namespace fiberloop::detail {

// Inline: one counter for the library, shared by a new task's constructor
// and a recycled one's restart.
inline std::atomic<unsigned long> task_counter{0};

}  // namespace fiberloop::detail
