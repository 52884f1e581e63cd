#include "fiberloop/detail/io_driver.hpp"

#include <poll.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

#include "fiberloop/detail/syscall_counts.hpp"
#include "fiberloop/errors.hpp"

namespace fiberloop::detail {
namespace {

constexpr std::uint32_t kInboxTag = 0;

HandleState*& waiter_of(IoEntry& entry, std::uint32_t kind) noexcept {
  return kind == Poller::kReadable ? entry.read_waiter : entry.write_waiter;
}

Ref<HandleState>& callback_of(IoEntry& entry, std::uint32_t kind) noexcept {
  return kind == Poller::kReadable ? entry.reader : entry.writer;
}

// still_hung_up(fd, kind) asks the kernel whether the hang-up or error
// reported earlier for this direction still holds (or the fd is ready
// anyway): a wait then returns at once, as an edge-triggered registration
// brings no new edge for a state that lasts. A TCP hang-up lasts for good;
// a datagram socket's error (EPOLLERR: an ICMP port-unreachable on a
// connected UDP socket) ends once a receive or send reports it. One poll(2),
// paid only by waits on a fd that was reported hung up.
bool still_hung_up(int fd, std::uint32_t kind) noexcept {
  pollfd p{fd, static_cast<short>(kind == Poller::kReadable ? (POLLIN | POLLRDHUP) : POLLOUT), 0};
  ++syscall_counts().polls;
  int n = ::poll(&p, 1, 0);
  return n != 0;  // ready, hung up, in error, closed (POLLNVAL), or poll failed: don't wait
}

}  // namespace

IoDriver::IoDriver(LoopCore& core) : core_(core) {
  poller_.watch(core_.inbox_fd(), Poller::kReadable, false, kInboxTag);
}

std::uint32_t IoDriver::take_tag() noexcept {
  std::uint32_t tag = next_tag_;
  if (++next_tag_ == kInboxTag) next_tag_ = kInboxTag + 1;
  return tag;
}

void IoDriver::poll_kernel(std::int64_t timeout_ns) {
  Poller::Event events[256];
  int n = poller_.wait(timeout_ns, events);
  for (int i = 0; i < n; ++i) {
    if (events[i].tag == kInboxTag && events[i].fd == core_.inbox_fd()) {
      core_.clear_inbox_wakeup();
      core_.take_posts();
      continue;
    }
    dispatch(events[i]);
  }
}

void IoDriver::dispatch(const Poller::Event& event) {
  IoEntry* entry = table_.find(event.fd);
  if (!entry || entry->tag != event.tag || !entry->registered) {
    orphan_event(event.fd, entry != nullptr);
    return;
  }
  if (entry->registered & Poller::kEdge) {
    // A waiting task is woken here, not through a callback that would run on
    // the next iteration: its step joins this iteration's ready batch. Only
    // the entry is touched: the task's memory is first read when it runs.
    std::uint32_t ready = event.ready & (Poller::kReadable | Poller::kWritable);
    if (event.ready & Poller::kReadHangup) entry->hung_up |= Poller::kReadable;
    if (event.ready & Poller::kWriteHangup) entry->hung_up |= Poller::kWritable;
    for (std::uint32_t kind : {Poller::kReadable, Poller::kWritable}) {
      HandleState*& waiter = waiter_of(*entry, kind);
      if ((ready & kind) && waiter) {
        ready &= ~kind;  // consumed by this wake-up
        core_.requeue_step(std::exchange(waiter, nullptr));
      }
    }
    entry->ready |= ready;  // nobody waits: remembered for the next wait
    return;
  }
  if ((event.ready & Poller::kReadable) && entry->reader && !entry->reader->cancelled)
    core_.push_ready(entry->reader.get());
  if ((event.ready & Poller::kWritable) && entry->writer && !entry->writer->cancelled)
    core_.push_ready(entry->writer.get());
}

void IoDriver::orphan_event(int fd, bool has_entry) {
  // epoll reports a registration the table does not have. If the number
  // still names the registered file, deleting it is enough. Otherwise the fd
  // was closed while a dup kept its file open (or the number now names
  // another file): nothing can address that registration any more, and a
  // level-triggered one would spin the loop at 100% CPU forever, so the
  // epoll instance is rebuilt from the table.
  bool rebuilt = false;
  if (has_entry || poller_.unwatch(fd) != 0) {
    rebuild_poller();
    rebuilt = true;
  }
  if (core_.debug()) {
    core_.call_exception_handler(
        {"epoll reported fd " + std::to_string(fd) +
             ", which the loop no longer watches: it was closed before remove_reader/"
             "remove_writer/forget_fd while a dup kept its file open" +
             (rebuilt ? " (the loop rebuilt its epoll set to drop it)" : "") +
             ". Remove an fd from the loop before closing it.",
         nullptr,
         {}});
  }
}

void IoDriver::rebuild_poller() {
  poller_.rebuild();
  poller_.watch(core_.inbox_fd(), Poller::kReadable, false, kInboxTag);
  table_.for_each([this](int fd, IoEntry& entry) {
    if (!entry.registered) return;
    try {
      poller_.watch(fd, entry.registered, false, entry.tag);
    } catch (const std::system_error&) {
      // Closed behind the loop's back: no event can come for it now.
    }
  });
}

void IoDriver::add_callback(int fd, std::uint32_t kind, Callback cb) {
  core_.check_closed();
  if (fd < 0)
    throw std::invalid_argument("add_reader/add_writer: invalid file descriptor " +
                                std::to_string(fd));
  IoEntry* entry = table_.find(fd);
  if (entry && (entry->registered & Poller::kEdge)) {
    throw RuntimeError("add_reader/add_writer: fd " + std::to_string(fd) +
                       " is in use by wait_readable/wait_writable (a Socket); forget_fd() it first");
  }
  std::uint32_t before = entry ? entry->registered : 0;
  // epoll hears of every add, even one that leaves the mask as it was: if fd
  // was closed and its number reused, epoll dropped it, and MOD's ENOENT
  // makes the poller add it again. A fresh tag disowns the events of any
  // registration left over from the number's previous file. Nothing is
  // recorded before epoll accepted the fd, so a bogus (huge) number costs
  // no memory.
  poller_.watch(fd, before | kind, before != 0, next_tag_);
  std::uint32_t tag = take_tag();  // taken once epoll accepted it
  if (!entry) entry = &table_.insert(fd);
  entry->registered = before | kind;
  entry->tag = tag;
  Ref<HandleState> h(new HandleState(&core_, HandleState::Kind::repeating));
  h->callback = std::move(cb);
  Ref<HandleState>& slot = callback_of(*entry, kind);
  if (slot) slot->cancel();
  slot = std::move(h);
}

bool IoDriver::remove_callback(int fd, std::uint32_t kind) {
  if (core_.closed()) return false;
  IoEntry* entry = table_.find(fd);
  if (!entry || (entry->registered & Poller::kEdge)) return false;
  Ref<HandleState>& slot = callback_of(*entry, kind);
  if (!slot) return false;
  std::uint32_t after = entry->registered & ~kind;
  if (after) {
    try {
      poller_.watch(fd, after, true, entry->tag);
    } catch (const std::system_error&) {
      // Closed behind our back; an orphaned registration is caught in poll.
    }
  } else {
    // EBADF/ENOENT: closed behind our back. The kernel dropped it, unless a
    // dup keeps the file open: then its events come back as orphans.
    poller_.unwatch(fd);
  }
  slot->cancel();
  slot.reset();
  entry->registered = after;
  if (!after) table_.erase(fd);
  return true;
}

IoEntry& IoDriver::entry_for_waits(int fd, const char* what) {
  if (fd < 0)
    throw std::invalid_argument(std::string(what) + ": invalid file descriptor " +
                                std::to_string(fd));
  IoEntry* entry = table_.find(fd);
  if (entry && !(entry->registered & Poller::kEdge)) {
    throw RuntimeError(std::string(what) + ": fd " + std::to_string(fd) +
                       " has add_reader/add_writer callbacks; remove them first");
  }
  if (entry) return *entry;
  // Registered once, for both directions, edge-triggered: later waits on
  // this fd cost no epoll_ctl. The kernel reports the current state as a
  // first edge, so nothing that is ready already is missed.
  constexpr std::uint32_t mask = Poller::kReadable | Poller::kWritable | Poller::kEdge;
  poller_.watch(fd, mask, false, next_tag_);
  std::uint32_t tag = take_tag();
  IoEntry& fresh = table_.insert(fd);
  fresh.registered = mask;
  fresh.tag = tag;
  return fresh;
}

IoDriver::WaitSlot IoDriver::arm_wait(int fd, std::uint32_t kind, const char* what,
                                      IoRegistration* reg) {
  core_.check_closed();
  IoEntry* entry = reg ? reg->get() : nullptr;
  if (!entry) {
    entry = &entry_for_waits(fd, what);
    if (reg) *reg = IoRegistration{entry, entry->tag};
  }
  if (entry->hung_up & kind) {
    if (still_hung_up(fd, kind)) return nullptr;
    // The state ended: a transient error (EPOLLERR on a UDP socket, an ICMP
    // port-unreachable) that a receive or send has consumed. From now on
    // the fd waits for its next edge like any other.
    entry->hung_up &= ~kind;
  }
  if (entry->ready & kind) {
    entry->ready &= ~kind;
    return nullptr;
  }
  HandleState*& slot = waiter_of(*entry, kind);
  if (slot) {
    throw RuntimeError(std::string(what) + ": another task already waits on fd " +
                       std::to_string(fd));
  }
  return &slot;
}

bool IoDriver::disarm_wait(int fd, std::uint32_t kind, const HandleState* waiter) noexcept {
  IoEntry* e = table_.find(fd);
  if (!e || waiter_of(*e, kind) != waiter) return false;
  waiter_of(*e, kind) = nullptr;
  return true;
}

void IoDriver::abandon_wait(int fd, std::uint32_t kind, const HandleState* waiter,
                            std::uint32_t tag) noexcept {
  IoEntry* e = table_.find(fd);
  if (!e || e->tag != tag) return;  // forgotten meanwhile: no edge to keep
  HandleState*& slot = waiter_of(*e, kind);
  if (slot == waiter) {
    slot = nullptr;
    return;
  }
  if (!slot) {
    e->ready |= kind;
    return;
  }
  try {
    core_.requeue_step(std::exchange(slot, nullptr));
  } catch (...) {
    // The loop is closing: that task is being unwound too.
  }
}

bool IoDriver::forget(int fd) noexcept {
  IoEntry* entry = table_.find(fd);
  if (!entry) return false;
  if (entry->registered) poller_.unwatch(fd);
  if (entry->reader) entry->reader->cancel();
  if (entry->writer) entry->writer->cancel();
  HandleState* waiters[2] = {entry->read_waiter, entry->write_waiter};
  table_.erase(fd);  // the waits see it gone, and raise EBADF
  for (HandleState* w : waiters) {
    if (!w) continue;
    try {
      core_.requeue_step(w);
    } catch (...) {
      // The loop is closing: the waiting task is being unwound anyway.
    }
  }
  return true;
}

std::size_t IoDriver::awaited() noexcept {
  std::size_t n = 0;
  table_.for_each([&n](int, IoEntry& e) {
    if (e.reader || e.writer || e.read_waiter || e.write_waiter) ++n;
  });
  return n;
}

void IoDriver::clear() noexcept {
  table_.for_each([this](int fd, IoEntry& entry) {
    if (entry.registered) poller_.unwatch(fd);
    if (entry.reader) entry.reader->cancel();
    if (entry.writer) entry.writer->cancel();
  });
  table_.clear();
}

}  // namespace fiberloop::detail
