// stall_report.hpp: reading what the stall watchdog wrote on a forked
// child's stderr (stall_watchdog_test.cpp, hooks/report_test.cpp). The
// detection report starts with kDetected; the tests' exception handlers
// write the end report between kEndOpen and "]END".
#pragma once

#include <unistd.h>

#include <cstddef>
#include <string>

#if defined(__SANITIZE_THREAD__)
// TSan delivers a signal only at its own safe points: the backtrace may be
// missing (the report says so); the name and the duration are not.
inline constexpr bool kBacktraceExpected = false;
#else
inline constexpr bool kBacktraceExpected = true;
#endif

inline constexpr const char* kDetected = "fiberloop: stall watchdog: ";
inline constexpr const char* kEndOpen = "END[";

// say(text) writes to stderr with one system call: safe from a handler.
inline void say(const std::string& text) {
  (void)!::write(STDERR_FILENO, text.data(), text.size());
}

inline std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// between(text, open, close) is what follows the first `open`, up to
// `close` or the end; empty without an `open`.
inline std::string between(const std::string& text, const std::string& open,
                           const std::string& close) {
  auto from = text.find(open);
  if (from == std::string::npos) return {};
  from += open.size();
  auto to = text.find(close, from);
  return text.substr(from, to == std::string::npos ? std::string::npos : to - from);
}
