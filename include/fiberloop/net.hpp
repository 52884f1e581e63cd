// net.hpp: the networking headers in one include.
#pragma once

#include "fiberloop/net/address.hpp"
#include "fiberloop/net/datagram.hpp"
#include "fiberloop/net/server.hpp"
#include "fiberloop/net/socket.hpp"
#include "fiberloop/net/streams.hpp"
#include "fiberloop/net/tls.hpp"
