// detail/loop_link.hpp: how an object that may outlive its loop finds it.
#pragma once

#include "fiberloop/detail/ref.hpp"

namespace fiberloop::detail {

class LoopCore;

// LoopLink lets an object that may outlive its loop (a future, a Socket
// registered with one) find out whether the loop still exists: the loop
// nulls `core` when it is destroyed. Loop-thread only, like Ref.
struct LoopLink : RefCounted {
  LoopCore* core = nullptr;
};

}  // namespace fiberloop::detail
