#include "fiberloop/detail/io_table.hpp"

#include <algorithm>

namespace fiberloop::detail {

IoEntry& IoTable::insert(int fd) {
  IoEntry* e;
  if (fd < kDenseLimit) {
    auto index = static_cast<std::size_t>(fd);
    if (index >= dense_.size()) {
      std::size_t size = std::max<std::size_t>(64, dense_.size());
      while (size <= index) size *= 2;
      dense_.resize(std::min<std::size_t>(size, kDenseLimit));
    }
    e = &dense_[index];
  } else {
    e = &sparse_[fd];
  }
  if (!e->present) {
    e->present = true;
    ++count_;
  }
  return *e;
}

void IoTable::erase(int fd) noexcept {
  if (fd < 0) return;
  if (fd < kDenseLimit) {
    auto index = static_cast<std::size_t>(fd);
    if (index >= dense_.size() || !dense_[index].present) return;
    dense_[index] = IoEntry{};
    --count_;
    return;
  }
  count_ -= sparse_.erase(fd);
}

void IoTable::clear() noexcept {
  std::vector<IoEntry>().swap(dense_);
  sparse_.clear();
  count_ = 0;
}

}  // namespace fiberloop::detail
