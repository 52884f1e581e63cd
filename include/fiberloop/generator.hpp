// generator.hpp: a stackful generator on one boost::context::fiber.
#pragma once

#include <concepts>
#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "fiberloop/detail/fiber.hpp"
#include "fiberloop/errors.hpp"

namespace fiberloop {

// Generator<Yield, Send> runs `body(gen)` on its own fiber, like a Python
// generator: send() resumes it and returns what it yields next, or nullopt
// once the body has returned. Inside the body, gen.yield(v) hands v out and
// returns the value of the next send(). It knows nothing of futures or loops.
//
// Example:
//   fiberloop::Generator<int, int> acc([](auto& gen) {
//     int total = 0;
//     for (;;) total += gen.yield(total);
//   });
//   acc.send();    // starts it: yields 0
//   acc.send(5);   // yields 5
//
// An exception escaping the body is rethrown by the send() or throw_into()
// that resumed it; nothing else crosses the fiber boundary. Destroying or
// close()-ing a suspended generator unwinds its stack: RAII destructors run,
// and a catch (...) in the body must rethrow FiberUnwind.
template <class Yield, class Send = void>
class Generator {
  static constexpr bool kSendsValues = !std::is_void_v<Send>;
  struct NoValue {};

 public:
  // Generator(body, stack_size) takes a stack from the pool (0: default size)
  // and stores body on it; nothing of body runs before the first send().
  // clang-format off
  template <class Body>
    requires std::invocable<std::decay_t<Body>&, Generator&>
  explicit Generator(Body&& body, std::size_t stack_size = 0) {
    // clang-format on
    fiber_.create(stack_size, [this, body = std::forward<Body>(body)]() mutable { run(body); });
  }
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // send() starts the generator, or (Send = void) resumes it. Returns the next
  // yielded value, nullopt when the body returned; rethrows what it threw.
  // Throws RuntimeError if the generator finished or is executing, and (Send
  // not void) if it was started already: use send(value) then.
  std::optional<Yield> send() {
    if constexpr (kSendsValues) {
      if (fiber_.started())
        throw RuntimeError("Generator::send(): a started generator expects send(value)");
    }
    return resume();
  }

  // send(value) resumes a started generator; its yield() returns value.
  // clang-format off
  std::optional<Yield> send(std::conditional_t<kSendsValues, Send, NoValue> value)
    requires kSendsValues
  {
    // clang-format on
    if (!fiber_.started())
      throw RuntimeError("Generator::send(value): start the generator with send() first");
    sent_.emplace(std::move(value));
    return resume();
  }

  // throw_into(e) raises e at the yield point and returns what the body yields
  // next (if it catches e). A generator not yet started finishes without
  // running and e is rethrown to the caller, as in Python.
  // Throws std::invalid_argument for a null e (nothing changes then).
  std::optional<Yield> throw_into(std::exception_ptr e) {
    if (!e) throw std::invalid_argument("Generator::throw_into(): null exception_ptr");
    check_resumable("throw_into");
    if (!fiber_.started()) {
      fiber_.unwind();
      std::rethrow_exception(e);
    }
    thrown_ = std::move(e);
    return resume();
  }

  // close() ends the generator; a suspended one unwinds its stack.
  void close() {
    if (fiber_.running()) throw RuntimeError("Generator::close(): the generator is executing");
    fiber_.unwind();
  }

  // yield(value), called by the body, suspends it until the next send().
  // Throws RuntimeError from anywhere but this generator's own body.
  auto yield(Yield value) -> std::conditional_t<kSendsValues, Send, void> {
    if (detail::Fiber::current() != &fiber_) {
      throw RuntimeError("Generator::yield() called outside the generator's own body");
    }
    yielded_.emplace(std::move(value));
    fiber_.suspend();
    if (thrown_) std::rethrow_exception(std::exchange(thrown_, nullptr));
    if constexpr (kSendsValues) return std::move(*sent_);
  }

  bool started() const noexcept { return fiber_.started(); }
  bool running() const noexcept { return fiber_.running(); }
  bool done() const noexcept { return fiber_.finished(); }

 private:
  template <class Body>
  void run(Body& body) {
    try {
      body(*this);
    } catch (const FiberUnwind&) {
      throw;
    } catch (...) {
      error_ = std::current_exception();
    }
  }

  void check_resumable(const char* what) const {
    if (fiber_.finished())
      throw RuntimeError(std::string("Generator::") + what + "(): the generator has finished");
    if (fiber_.running())
      throw RuntimeError(std::string("Generator::") + what +
                         "(): the generator is already executing");
  }

  std::optional<Yield> resume() {
    check_resumable("send");
    yielded_.reset();
    fiber_.resume();
    if (fiber_.finished()) {
      if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
      return std::nullopt;
    }
    return std::move(yielded_);
  }

  detail::Fiber fiber_;
  std::optional<Yield> yielded_;
  [[no_unique_address]] std::conditional_t<
      kSendsValues, std::optional<std::conditional_t<kSendsValues, Send, int>>, NoValue>
      sent_;
  std::exception_ptr thrown_;  // to raise at the yield point
  std::exception_ptr error_;   // what the body threw
};

}  // namespace fiberloop
