// discard_stream.hpp: a streambuf that counts what it is given and keeps
// none of it, for measuring what writes a stream (the task dump) and not a
// string's growth.
#pragma once

#include <cstddef>
#include <streambuf>

struct DiscardStream : std::streambuf {
  std::size_t written = 0;
  int_type overflow(int_type c) override {
    ++written;
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char*, std::streamsize n) override {
    written += static_cast<std::size_t>(n);
    return n;
  }
};
