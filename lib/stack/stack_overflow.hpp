// stack_overflow.hpp (private): the SIGSEGV/SIGBUS handler that names the
// task or Generator whose stack overflowed into its guard.
#pragma once

namespace fiberloop::detail {

// enable_overflow_reports() installs the process's handler (once) and this
// thread's alternate signal stack (once per thread, released at its exit).
// Cheap after the first call on a thread. Never throws: without an
// alternate stack an overflow still kills the process, only unnamed.
void enable_overflow_reports() noexcept;

}  // namespace fiberloop::detail
