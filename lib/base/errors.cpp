#include "fiberloop/errors.hpp"

namespace fiberloop {

IncompleteReadError::IncompleteReadError(std::string partial_bytes,
                                         std::optional<std::size_t> expected_bytes)
    : Error(std::to_string(partial_bytes.size()) + " bytes read on a total of " +
            (expected_bytes ? std::to_string(*expected_bytes) : std::string("undefined")) +
            " expected bytes"),
      partial(std::move(partial_bytes)),
      expected(expected_bytes) {}

LimitOverrunError::LimitOverrunError(const std::string& message, std::size_t consumed_bytes)
    : Error(message), consumed(consumed_bytes) {}

ExceptionGroup::ExceptionGroup(const std::string& message,
                               std::vector<std::exception_ptr> exceptions)
    : Error(message + " (" + std::to_string(exceptions.size()) + " sub-exception" +
            (exceptions.size() == 1 ? "" : "s") + ")"),
      exceptions_(std::move(exceptions)) {
  if (exceptions_.empty()) throw std::invalid_argument("ExceptionGroup: no exceptions");
}

namespace detail {

WaitedOnDestroyed::WaitedOnDestroyed(const char* primitive, const char* call)
    : RuntimeError(std::string(primitive) + " destroyed while a task was waiting in " + call) {}

}  // namespace detail

}  // namespace fiberloop
