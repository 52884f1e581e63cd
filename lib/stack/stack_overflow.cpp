#include "stack_overflow.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "fiberloop/detail/stack_placement.hpp"
#include "stack_arena.hpp"

namespace fiberloop::detail {
namespace {

struct sigaction previous_segv;
struct sigaction previous_bus;
std::once_flag install_once;

// Set once, from any thread, before or after the handler is installed; the
// handler reads it on whatever thread faults.
constinit std::atomic<RunningLabel> running_label{nullptr};
static_assert(std::atomic<RunningLabel>::is_always_lock_free,
              "a signal handler may read it: no lock behind it");

// Line builds the report in a fixed buffer: the handler may not allocate.
class Line {
 public:
  void add(const char* s) noexcept { add(s, std::strlen(s)); }
  void add(const char* s, std::size_t n) noexcept {
    n = std::min(n, sizeof(buf_) - 1 - len_);
    std::memcpy(buf_ + len_, s, n);
    len_ += n;
  }
  void add(std::uint64_t v) noexcept {
    char digits[24];
    std::size_t n = 0;
    do {
      digits[sizeof(digits) - 1 - n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    add(digits + sizeof(digits) - n, n);
  }
  // add_size() prints bytes as KiB or MiB when exact, else as bytes.
  void add_size(std::size_t bytes) noexcept {
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) {
      add(bytes >> 20);
      add(" MiB");
    } else if (bytes >= 1024 && bytes % 1024 == 0) {
      add(bytes >> 10);
      add(" KiB");
    } else {
      add(bytes);
      add(" B");
    }
  }
  // add_name() prints 'name', or 'Task-N' when the name is empty.
  void add_task(const std::string* name, std::uint64_t number) noexcept {
    add("Task '");
    if (name && !name->empty()) {
      add(name->data(), std::min<std::size_t>(name->size(), 200));
    } else {
      add("Task-");
      add(number);
    }
    add("'");
  }
  void write_to(int fd) noexcept {
    buf_[len_++] = '\n';
    const char* p = buf_;
    std::size_t left = len_;
    while (left) {
      ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }

 private:
  char buf_[512];
  std::size_t len_ = 0;
};

void report(const GuardHit& hit) noexcept {
  Line line;
  line.add("fiberloop: stack overflow in ");
  if (hit.slot->owner == StackOwner::task) {
    line.add_task(hit.slot->name, hit.slot->number);
  } else {
    line.add("Generator");
    // The task stepping on this thread is the one that drove the generator.
    RunningLabel source = running_label.load(std::memory_order_acquire);
    StackLabel task = source ? source() : StackLabel{};
    if (task.number) {
      line.add(" driven by ");
      line.add_task(task.name, task.number);
    }
  }
  line.add(" (stack ");
  line.add_size(hit.region->usable);
  line.add(", fault ");
  line.add(hit.below);
  line.add(" B below its end); raise ");
  line.add(hit.slot->owner == StackOwner::task ? "TaskOptions::stack_size"
                                               : "the Generator's stack_size");
  line.add(" or StackPool default");
  line.write_to(STDERR_FILENO);
}

bool is_default_or_ignored(const struct sigaction& sa) noexcept {
  if (sa.sa_flags & SA_SIGINFO) return sa.sa_sigaction == nullptr;
  return sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN;
}

// die_by() hands the signal to the disposition in force before ours: a fault
// re-triggers on return, a signal sent by kill() is raised again.
void die_by(int sig, const struct sigaction& previous, const siginfo_t* info) noexcept {
  ::sigaction(sig, &previous, nullptr);
  if (info->si_code <= 0) ::raise(sig);
}

void on_fault(int sig, siginfo_t* info, void* context) {
  int saved_errno = errno;
  const struct sigaction& previous = sig == SIGBUS ? previous_bus : previous_segv;
  GuardHit hit = find_guard_hit(reinterpret_cast<std::uintptr_t>(info->si_addr));
  if (hit.slot && info->si_code > 0) {
    report(hit);
    die_by(sig, previous, info);
  } else if (is_default_or_ignored(previous)) {
    die_by(sig, previous, info);
  } else if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, context);
  } else {
    previous.sa_handler(sig);
  }
  errno = saved_errno;
}

void install_handler() noexcept {
  struct sigaction sa {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &previous_segv);
  ::sigaction(SIGBUS, &sa, &previous_bus);
}

// AltStack gives a thread an alternate signal stack, unless it has one, and
// takes it away when the thread ends.
class AltStack {
 public:
  AltStack() noexcept {
    stack_t current{};
    if (::sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;
    long min = ::sysconf(_SC_SIGSTKSZ);
    size_ = std::max<std::size_t>(64 * 1024, min > 0 ? static_cast<std::size_t>(min) : 0);
    std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    size_ = (size_ + page - 1) / page * page;
    // One guard page below: an overflow of the handler itself faults cleanly.
    void* m =
        ::mmap(nullptr, size_ + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return;
    ::mprotect(m, page, PROT_NONE);
    mapping_ = m;
    stack_t ss{};
    ss.ss_sp = static_cast<char*>(m) + page;
    ss.ss_size = size_;
    if (::sigaltstack(&ss, nullptr) != 0) {
      ::munmap(m, size_ + page);
      mapping_ = nullptr;
    }
  }
  ~AltStack() {
    if (!mapping_) return;
    std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    stack_t current{};
    if (::sigaltstack(nullptr, &current) == 0 &&
        current.ss_sp == static_cast<char*>(mapping_) + page) {
      stack_t off{};
      off.ss_flags = SS_DISABLE;
      ::sigaltstack(&off, nullptr);
    }
    ::munmap(mapping_, size_ + page);
  }
  AltStack(const AltStack&) = delete;
  AltStack& operator=(const AltStack&) = delete;

 private:
  void* mapping_ = nullptr;
  std::size_t size_ = 0;
};

thread_local bool thread_ready = false;

}  // namespace

void set_running_label_source(RunningLabel source) noexcept {
  running_label.store(source, std::memory_order_release);
}

void enable_overflow_reports() noexcept {
  if (thread_ready) return;
  thread_ready = true;
  std::call_once(install_once, install_handler);
  thread_local AltStack alt_stack;
}

}  // namespace fiberloop::detail
