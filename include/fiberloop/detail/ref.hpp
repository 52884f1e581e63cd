// detail/ref.hpp: intrusive, single-threaded reference counting.
#pragma once

#include <cstdint>
#include <utility>

namespace fiberloop::detail {

// RefCounted counts references without atomics: everything it backs (futures,
// tasks, handles) belongs to one loop thread.
class RefCounted {
 public:
  RefCounted() = default;
  RefCounted(const RefCounted&) = delete;
  RefCounted& operator=(const RefCounted&) = delete;

  void add_ref() noexcept { ++refs_; }
  // release() returns true when the last reference went and the owner must be destroyed.
  bool release() noexcept { return --refs_ == 0; }
  std::uint32_t ref_count() const noexcept { return refs_; }

 private:
  std::uint32_t refs_ = 0;
};

// Ref<T> is a copyable owning pointer to a RefCounted T; T must be deletable
// through T* (a virtual destructor where T is a base).
template <class T>
class Ref {
 public:
  Ref() noexcept = default;
  explicit Ref(T* p) noexcept : p_(p) {
    if (p_) p_->add_ref();
  }
  Ref(const Ref& o) noexcept : Ref(o.p_) {}
  Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  template <class U>
  Ref(const Ref<U>& o) noexcept : Ref(o.get()) {}
  Ref& operator=(Ref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~Ref() { reset(); }

  void reset() noexcept {
    if (T* p = std::exchange(p_, nullptr); p && p->release()) delete p;
  }
  // adopt() takes over a reference that was added by hand (add_ref) elsewhere.
  static Ref adopt(T* p) noexcept {
    Ref r;
    r.p_ = p;
    return r;
  }
  // leak() gives up ownership without releasing; pair with adopt().
  T* leak() noexcept { return std::exchange(p_, nullptr); }

  T* get() const noexcept { return p_; }
  T* operator->() const noexcept { return p_; }
  T& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  friend bool operator==(const Ref& a, const Ref& b) noexcept { return a.p_ == b.p_; }

 private:
  T* p_ = nullptr;
};

}  // namespace fiberloop::detail
