// detail/inline_function.hpp: a move-only std::function with inline storage.
#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

#include "fiberloop/detail/object_pool.hpp"

namespace fiberloop::detail {

template <class Signature, std::size_t Capacity>
class InlineFunction;

// InlineFunction<R(A...), Capacity> stores a callable of up to Capacity bytes
// in place; a larger one goes to the object pool, so no callable allocates
// from the heap in steady state. Move-only callables are accepted.
template <class R, class... A, std::size_t Capacity>
class InlineFunction<R(A...), Capacity> {
 public:
  InlineFunction() noexcept = default;
  InlineFunction(std::nullptr_t) noexcept {}

  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, InlineFunction> &&
           std::is_invocable_r_v<R, std::decay_t<F>&, A...>)
      InlineFunction(F&& f) {  // NOLINT: implicit like std::function
    construct(std::forward<F>(f));
  }

  // emplace(f) stores f, built in place (no temporary to move from); the
  // function must be empty. An InlineFunction is moved in, not wrapped.
  template <class F>
  requires std::is_invocable_r_v<R, std::decay_t<F>&, A...>
  void emplace(F&& f) {
    if constexpr (std::is_same_v<std::decay_t<F>, InlineFunction>) {
      if constexpr (std::is_lvalue_reference_v<F>) {
        static_assert(sizeof(F) == 0, "InlineFunction is move-only: emplace(std::move(f))");
      } else {
        take(std::move(f));
      }
    } else {
      construct(std::forward<F>(f));
    }
  }

  InlineFunction(InlineFunction&& o) noexcept { take(std::move(o)); }
  InlineFunction& operator=(InlineFunction&& o) noexcept {
    if (this != &o) {
      reset();
      take(std::move(o));
    }
    return *this;
  }
  ~InlineFunction() { reset(); }

  void reset() noexcept {
    if (const Ops* ops = std::exchange(ops_, nullptr); ops && ops->destroy) ops->destroy(buf_);
  }
  explicit operator bool() const noexcept { return ops_ != nullptr; }

  R operator()(A... args) { return ops_->invoke(buf_, std::forward<A>(args)...); }

 private:
  struct Ops {
    R (*invoke)(void*, A&&...);
    void (*move)(void* dst, void* src) noexcept;  // leaves src destroyed
    void (*destroy)(void*) noexcept;              // null: trivially destructible
  };

  template <class F>
  void construct(F&& f) {
    using Fn = std::decay_t<F>;
    if constexpr (fits_inline<Fn>()) {
      ::new (static_cast<void*>(buf_)) Fn(std::forward<F>(f));
      ops_ = &inline_ops<Fn>;
    } else {
      void* mem = pool_allocate(sizeof(Fn));
      try {
        ::new (mem) Fn(std::forward<F>(f));
      } catch (...) {
        pool_deallocate(mem, sizeof(Fn));
        throw;
      }
      *reinterpret_cast<void**>(buf_) = mem;
      ops_ = &pooled_ops<Fn>;
    }
  }

  template <class Fn>
  static constexpr bool fits_inline() {
    return sizeof(Fn) <= Capacity && alignof(Fn) <= alignof(std::max_align_t) &&
           std::is_nothrow_move_constructible_v<Fn>;
  }

  template <class Fn>
  static constexpr Ops inline_ops{[](void* p, A&&... args) -> R {
                                    return std::invoke(*static_cast<Fn*>(p),
                                                       std::forward<A>(args)...);
                                  },
                                  [](void* dst, void* src) noexcept {
                                    ::new (dst) Fn(std::move(*static_cast<Fn*>(src)));
                                    static_cast<Fn*>(src)->~Fn();
                                  },
                                  std::is_trivially_destructible_v<Fn>
                                      ? nullptr
                                      : +[](void* p) noexcept { static_cast<Fn*>(p)->~Fn(); }};

  template <class Fn>
  static constexpr Ops pooled_ops{
      [](void* p, A&&... args) -> R {
        return std::invoke(**static_cast<Fn**>(p), std::forward<A>(args)...);
      },
      [](void* dst, void* src) noexcept { *static_cast<void**>(dst) = *static_cast<void**>(src); },
      [](void* p) noexcept {
        Fn* fn = *static_cast<Fn**>(p);
        fn->~Fn();
        pool_deallocate(fn, sizeof(Fn));
      }};

  void take(InlineFunction&& o) noexcept {
    if (o.ops_) {
      o.ops_->move(buf_, o.buf_);
      ops_ = std::exchange(o.ops_, nullptr);
    }
  }

  alignas(std::max_align_t) unsigned char buf_[Capacity < sizeof(void*) ? sizeof(void*) : Capacity];
  const Ops* ops_ = nullptr;
};

}  // namespace fiberloop::detail
