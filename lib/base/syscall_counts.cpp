#include "fiberloop/detail/syscall_counts.hpp"

namespace fiberloop::detail {

SyscallCounts& syscall_counts() noexcept {
  thread_local SyscallCounts counts;
  return counts;
}

}  // namespace fiberloop::detail
