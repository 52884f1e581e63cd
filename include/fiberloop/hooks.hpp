// hooks.hpp: what libfiberloop-hooks (fiberloop_hooks_dep, or LD_PRELOAD)
// tells about itself. Linking the library is what turns the hooks on: libc's
// blocking calls made inside a task then wait on the loop (docs/hooks.md).
// Only a program linked with the hooks library may include this header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#define FIBERLOOP_HOOKS_API __attribute__((visibility("default")))

namespace fiberloop::hooks {

// Status is what the start-up check found: whether each hooked libc call
// resolves to the hooks, program-wide. A call listed in `lost` resolves
// first to another object (`lost_to`, its file), so that call still blocks
// the loop: the hooks library came after it in the link order.
struct Status {
  bool in_effect = false;            // every hooked call resolves to the hooks
  std::vector<std::string> lost;     // the calls that do not ("read", ...)
  std::vector<std::string> lost_to;  // for each, the object it resolves to
};
FIBERLOOP_HOOKS_API Status status();

// Stats counts, process-wide, what the hooks did in place of blocking: a
// readiness wait on the loop (waits), a sleep on the loop's timers
// (sleeps), a getaddrinfo run on the loop's executor (resolves), a hooked
// call failed with ECANCELED because its task was cancelled (cancelled).
struct Stats {
  std::uint64_t waits = 0;
  std::uint64_t sleeps = 0;
  std::uint64_t resolves = 0;
  std::uint64_t cancelled = 0;
};
FIBERLOOP_HOOKS_API Stats stats() noexcept;

}  // namespace fiberloop::hooks
