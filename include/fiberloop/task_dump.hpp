// task_dump.hpp: how fiberloop::run() arms the task dump from the environment.
// The dump itself is EventLoop::dump_tasks() and enable_dump_on_signal().
#pragma once

#include "fiberloop/event_loop.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// enable_dump_from_environment(loop): when FIBERLOOP_DUMP_SIGNAL names a
// signal ("SIGQUIT", "QUIT" or its number), that signal dumps the loop's
// tasks to stderr, or appended to the file FIBERLOOP_DUMP_FILE names.
// Throws std::invalid_argument naming the variable for a value that is no
// signal; the errors of add_signal_handler() otherwise.
FIBERLOOP_API void enable_dump_from_environment(EventLoop& loop);

}  // namespace fiberloop::detail
