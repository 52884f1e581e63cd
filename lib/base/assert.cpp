#include "fiberloop/detail/assert.hpp"

#include <cstdio>
#include <cstdlib>

namespace fiberloop::detail {

void assert_failed(const char* condition, const char* message, const char* file,
                   int line) noexcept {
  // fprintf, not iostreams: this may run with the heap or a stack in a bad state.
  std::fprintf(stderr, "fiberloop: internal check failed: %s (%s) at %s:%d\n", message, condition,
               file, line);
  std::abort();
}

}  // namespace fiberloop::detail
