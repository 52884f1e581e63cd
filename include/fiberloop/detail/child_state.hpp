// detail/child_state.hpp: what a Process's copies and the loop's child watcher share.
#pragma once

#include <sys/types.h>

#include <optional>

#include "fiberloop/event.hpp"
#include "fiberloop/net/streams.hpp"

namespace fiberloop {
class EventLoop;
}

namespace fiberloop::detail {

struct ChildState {
  ChildState(EventLoop& l, pid_t p) noexcept : loop(&l), pid(p) {}
  EventLoop* loop;
  pid_t pid;
  std::optional<int> returncode;  // set once reaped, with `exited`
  Event exited;
  int pidfd = -1;  // the watcher's, while it watches this child with one
  std::optional<net::StreamWriter> in;
  std::optional<net::StreamReader> out, err;
};

}  // namespace fiberloop::detail
