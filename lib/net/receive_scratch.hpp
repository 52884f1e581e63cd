// lib/net/receive_scratch.hpp (private): the thread's receive area, shared
// by the socket calls and the streams.
#pragma once

#include <cstddef>

namespace fiberloop::net::detail {

// receive_scratch() is this thread's kReceiveScratch-byte area that a
// receive lands in before it is copied out at its exact size: the 3 bytes of
// a datagram or of a short read hold 3 bytes, not the 64 KiB (or 1 MiB)
// asked for, and nothing is zero-filled first. The tasks of a thread share
// it: nothing suspends between a receive into it and the copy out. Its pages
// are touched only as receives write them. One receive through it takes at
// most kReceiveScratch bytes, as asyncio's transports read.
inline constexpr std::size_t kReceiveScratch = 256 * 1024;
char* receive_scratch();

}  // namespace fiberloop::net::detail
