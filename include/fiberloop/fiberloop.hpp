// fiberloop.hpp: everything.
#pragma once

#include "fiberloop/await.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/event_loop.hpp"
#include "fiberloop/future.hpp"
#include "fiberloop/generator.hpp"
#include "fiberloop/handle.hpp"
#include "fiberloop/poller.hpp"
#include "fiberloop/stack.hpp"
#include "fiberloop/task.hpp"
#include "fiberloop/completer.hpp"
#include "fiberloop/executor.hpp"
#include "fiberloop/net/address.hpp"
#include "fiberloop/net/resolver.hpp"
