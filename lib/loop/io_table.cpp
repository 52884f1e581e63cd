#include "fiberloop/detail/io_table.hpp"

namespace fiberloop::detail {

IoEntry& IoTable::insert(int fd) {
  IoEntry* e;
  if (fd < kDenseLimit) {
    auto page = static_cast<std::size_t>(fd) >> kPageBits;
    if (page >= pages_.size()) pages_.resize(page + 1);
    if (!pages_[page]) pages_[page] = std::make_unique<IoEntry[]>(kPage);
    e = &pages_[page][fd & (kPage - 1)];
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
  IoEntry* e = slot(fd);
  if (!e || !e->present) return;
  *e = IoEntry{};  // stays allocated: a registration may still point here
  --count_;
}

void IoTable::clear() noexcept {
  std::vector<std::unique_ptr<IoEntry[]>>().swap(pages_);
  sparse_.clear();
  count_ = 0;
}

}  // namespace fiberloop::detail
