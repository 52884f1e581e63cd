// generator.hpp: a stackful generator on one fiber of its own.
#pragma once

#include <concepts>
#include <cstddef>
#include <exception>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "fiberloop/detail/fiber.hpp"
#include "fiberloop/detail/object_pool.hpp"
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
//   fiberloop::Generator<int> count([](auto& gen) { for (int i = 0; i < 3; ++i) gen.yield(i); });
//   for (int i : count) use(i);  // 0, 1, 2 (Send = void only)
//
// An exception escaping the body is rethrown by the send() or throw_into()
// that resumed it; nothing else crosses the fiber boundary. Destroying or
// close()-ing a suspended generator unwinds its stack: RAII destructors run,
// and a catch (...) in the body must rethrow FiberUnwind.
//
// Waits: a body that waits (fiberloop::await, sleep) while a task drives it
// suspends that task, the generator staying parked inside the task's send()
// (as an async generator's awaits suspend its consumer); see detail::Fiber's
// forward(). The generator is then busy: running() is true.
//
// A Generator is movable (its state lives behind a stable pointer), not
// copyable. The `gen` handed to the body is a non-owning handle to the same
// state, valid while the generator lives; a moved-from Generator is empty
// (done() is true; other calls throw RuntimeError).
template <class Yield, class Send = void>
class Generator {
  static constexpr bool kSendsValues = !std::is_void_v<Send>;
  struct NoValue {};
  struct State;

 public:
  // Generator(body, stack_size) takes a stack from the pool (0: default size)
  // and stores body on it; nothing of body runs before the first send().
  // clang-format off
  template <class Body>
    requires(!std::is_same_v<std::decay_t<Body>, Generator> &&
             std::invocable<std::decay_t<Body>&, Generator&>)
  explicit Generator(Body&& body, std::size_t stack_size = 0) : s_(new State) {
    // clang-format on
    s_->view.s_ = s_;
    s_->view.view_ = true;
    try {
      State* s = s_;
      s->fiber.create(stack_size,
                      [s, body = std::forward<Body>(body)]() mutable { run(*s, body); });
    } catch (...) {
      delete s_;
      throw;
    }
  }
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;
  Generator(Generator&& other) noexcept : s_(other.s_), view_(other.view_) {
    if (!view_) other.s_ = nullptr;
  }
  Generator& operator=(Generator&& other) noexcept {
    if (this != &other) {
      release();
      s_ = other.s_;
      view_ = other.view_;
      if (!view_) other.s_ = nullptr;
    }
    return *this;
  }
  // ~Generator() unwinds a suspended body (see close()).
  ~Generator() { release(); }

  // send() starts the generator, or (Send = void) resumes it. Returns the next
  // yielded value, nullopt when the body returned; rethrows what it threw.
  // Throws RuntimeError if the generator finished or is executing, and (Send
  // not void) if it was started already: use send(value) then.
  std::optional<Yield> send() {
    if constexpr (kSendsValues) {
      if (state().fiber.started())
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
    if (!state().fiber.started())
      throw RuntimeError("Generator::send(value): start the generator with send() first");
    check_resumable("send");
    s_->sent.emplace(std::move(value));
    return resume();
  }

  // throw_into(e) raises e at the yield point and returns what the body yields
  // next (if it catches e). A generator not yet started finishes without
  // running and e is rethrown to the caller, as in Python.
  // Throws std::invalid_argument for a null e (nothing changes then).
  std::optional<Yield> throw_into(std::exception_ptr e) {
    if (!e) throw std::invalid_argument("Generator::throw_into(): null exception_ptr");
    check_resumable("throw_into");
    if (!s_->fiber.started()) {
      s_->fiber.unwind();
      std::rethrow_exception(e);
    }
    s_->thrown = std::move(e);
    return resume();
  }

  // close() ends the generator; a suspended one unwinds its stack.
  void close() {
    if (state().fiber.busy()) throw RuntimeError("Generator::close(): the generator is executing");
    s_->fiber.unwind();
  }

  // yield(value), called by the body, suspends it until the next send().
  // Throws RuntimeError from anywhere but this generator's own body.
  auto yield(Yield value) -> std::conditional_t<kSendsValues, Send, void> {
    if (!inside()) {
      throw RuntimeError("Generator::yield() called outside the generator's own body");
    }
    s_->yielded.emplace(std::move(value));
    s_->fiber.suspend();
    if (s_->thrown) std::rethrow_exception(std::exchange(s_->thrown, nullptr));
    if constexpr (kSendsValues) return std::move(*s_->sent);
  }

  // inside() is true when called from this generator's own body (not from
  // a generator it drives).
  bool inside() const noexcept { return s_ && detail::Fiber::current() == &s_->fiber; }

  bool started() const noexcept { return s_ && s_->fiber.started(); }
  // running() is true while the body runs, or waits for its driving task.
  bool running() const noexcept { return s_ && s_->fiber.busy(); }
  bool done() const noexcept { return !s_ || s_->fiber.finished(); }

  // iterator / begin() / end(): range-for over what the body yields (Send =
  // void). begin() resumes the generator (starting it if needed), each ++
  // resumes it again; the range ends when the body returns. What the body
  // throws comes out of begin() or ++.
  class iterator {
   public:
    using value_type = Yield;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    Yield& operator*() const { return *current_; }
    Yield* operator->() const { return &*current_; }
    iterator& operator++() {
      current_ = gen_->send();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return !it.current_;
    }

   private:
    friend class Generator;
    explicit iterator(Generator* gen) : gen_(gen), current_(gen->send()) {}
    Generator* gen_ = nullptr;
    mutable std::optional<Yield> current_;
  };
  // clang-format off
  iterator begin() requires(!kSendsValues) { return iterator(this); }
  std::default_sentinel_t end() const noexcept requires(!kSendsValues) { return {}; }
  // clang-format on

 private:
  template <class Body>
  static void run(State& s, Body& body) {
    try {
      body(s.view);
    } catch (const FiberUnwind&) {
      throw;
    } catch (...) {
      s.error = std::current_exception();
    }
  }

  void release() noexcept {
    if (s_ && !view_) delete s_;  // ~Fiber unwinds a suspended body
    s_ = nullptr;
  }

  State& state() const {
    if (!s_) throw RuntimeError("Generator: used after it was moved from");
    return *s_;
  }

  void check_resumable(const char* what) const {
    State& s = state();
    if (s.fiber.finished())
      throw RuntimeError(std::string("Generator::") + what + "(): the generator has finished");
    if (s.fiber.busy())
      throw RuntimeError(std::string("Generator::") + what +
                         "(): the generator is already executing");
  }

  std::optional<Yield> resume() {
    check_resumable("send");
    State* s = s_;  // `this` may be moved from while the body waits
    s->yielded.reset();
    s->fiber.resume();
    if (s->fiber.finished()) {
      if (s->error) std::rethrow_exception(std::exchange(s->error, nullptr));
      return std::nullopt;
    }
    return std::move(s->yielded);
  }

  Generator() noexcept = default;  // State's view, filled in by the constructor

  State* s_ = nullptr;
  bool view_ = false;  // the body's handle: does not own s_
};

// State is pooled: a task's generator costs no heap allocation in steady state.
template <class Yield, class Send>
struct Generator<Yield, Send>::State : detail::Pooled {
  // Members go in reverse order of need: the fiber is destroyed (unwinding
  // the body) first, while the rest is still there for the body to use.
  std::exception_ptr thrown;  // to raise at the yield point
  std::exception_ptr error;   // what the body threw
  std::optional<Yield> yielded;
  [[no_unique_address]] std::conditional_t<
      kSendsValues, std::optional<std::conditional_t<kSendsValues, Send, int>>, NoValue>
      sent;
  Generator view;  // what the body gets
  detail::Fiber fiber;
};

}  // namespace fiberloop
