// test_helpers.hpp: small things several test suites need.
#pragma once

#include <exception>
#include <fiberloop/errors.hpp>
#include <string>
#include <vector>

// Log collects what happened, in order, for exact-sequence assertions.
using Log = std::vector<std::string>;

// Counted records its destruction, to see which frames an unwind reached.
struct Counted {
  int& destroyed;
  explicit Counted(int& d) : destroyed(d) {}
  Counted(const Counted&) = delete;
  ~Counted() { ++destroyed; }
};

// what_of(e) describes a stored exception, to compare exceptions by content.
inline std::string what_of(const std::exception_ptr& e) {
  if (!e) return "<none>";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (const fiberloop::CancelledError& ex) {
    return "CancelledError: " + ex.message();
  } catch (...) {
    return "<not a std::exception>";
  }
}
