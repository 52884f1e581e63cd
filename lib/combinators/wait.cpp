#include "fiberloop/wait.hpp"

#include <cstdint>

#include "fiberloop/detail/waiters.hpp"

namespace fiberloop::detail {
namespace {

// WaitState outlives wait_core()'s frame: a completion already queued with
// call_soon when the waiter wakes still runs after wait_core() returned.
struct WaitState : RefCounted {
  Future<void> waiter;
  TimerHandle timeout;
  std::size_t counter;
  ReturnWhen return_when;

  void on_completion(FutureStateBase& f) {
    --counter;
    if (counter == 0 || return_when == ReturnWhen::first_completed ||
        (return_when == ReturnWhen::first_exception && f.has_exception())) {
      timeout.cancel();
      if (!waiter.done()) waiter.set_result();
    }
  }
};

}  // namespace

void wait_core(const std::vector<FutureStateBase*>& futures, std::optional<double> timeout,
               ReturnWhen return_when) {
  EventLoop& loop = get_running_loop();
  require_task("wait()");
  Ref<WaitState> state(
      new WaitState{{}, loop.create_future<void>(), {}, futures.size(), return_when});
  if (timeout) {
    state->timeout = loop.call_later(*timeout, [state] {
      if (!state->waiter.done()) state->waiter.set_result();
    });
  }
  std::vector<CallbackId> ids;
  ids.reserve(futures.size());
  for (FutureStateBase* f : futures) {
    ids.push_back(
        f->add_done_callback([state](FutureStateBase& done) { state->on_completion(done); }));
  }
  struct Cleanup {
    WaitState& state;
    const std::vector<FutureStateBase*>& futures;
    std::vector<CallbackId>& ids;
    ~Cleanup() {
      state.timeout.cancel();
      if (state.counter == 0) return;  // every callback ran: nothing left to remove
      for (std::size_t i = 0; i < futures.size(); ++i) futures[i]->remove_done_callback(ids[i]);
    }
  } cleanup{*state, futures, ids};
  await_as(state->waiter, "wait()", std::source_location::current());
}

std::vector<std::size_t> repeated_positions(const std::vector<FutureStateBase*>& states) {
  std::vector<std::size_t> repeats;
  const std::size_t n = states.size();
  if (n <= 16) {
    // A few: a scan allocates nothing (gather(a, b) is the common case).
    for (std::size_t i = 1; i < n; ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (states[j] == states[i]) {
          repeats.push_back(i);
          break;
        }
      }
    }
    return repeats;
  }
  // Open addressing, linear probing, at most half full: one allocation.
  unsigned bits = 1;
  while ((std::size_t{1} << bits) < 2 * n) ++bits;
  const std::size_t mask = (std::size_t{1} << bits) - 1;
  std::vector<const FutureStateBase*> table(mask + 1, nullptr);
  for (std::size_t i = 0; i < n; ++i) {
    const FutureStateBase* p = states[i];
    // Fibonacci hashing of the address: states come from a pool, evenly spaced.
    auto h = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(p) >> 4) *
             0x9E3779B97F4A7C15ull;
    std::size_t slot = static_cast<std::size_t>(h >> (64 - bits));
    while (table[slot] && table[slot] != p) slot = (slot + 1) & mask;
    if (table[slot]) {
      repeats.push_back(i);
    } else {
      table[slot] = p;
    }
  }
  return repeats;
}

void cancel_and_wait(FutureStateBase* fut) {
  EventLoop& loop = get_running_loop();
  Future<void> waiter = loop.create_future<void>();
  CallbackId id = fut->add_done_callback([waiter](FutureStateBase&) {
    if (!waiter.done()) waiter.set_result();
  });
  struct Cleanup {
    FutureStateBase* fut;
    CallbackId id;
    ~Cleanup() { fut->remove_done_callback(id); }
  } cleanup{fut, id};
  fut->cancel("");
  await_as(waiter, "wait_for()", std::source_location::current());
}

struct AsCompletedCore::Shared {
  // todo[i] is the future at position i until it completes (or the timeout
  // came): null after. Each done-callback knows its position, so a
  // completion costs O(1) whatever the number of futures.
  std::vector<Ref<FutureStateBase>> todo;
  std::vector<CallbackId> ids;
  std::size_t pending = 0;        // non-null entries of todo
  std::vector<std::size_t> done;  // positions in completion order; npos: the timeout's mark
  std::size_t taken = 0;          // done[0, taken) were returned by next()
  Future<void> waiter;            // set while next() waits
  TimerHandle timeout;

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  void wake() {
    if (waiter.valid() && !waiter.done()) waiter.set_result();
  }
  void on_completion(std::size_t i) {
    if (!todo[i]) return;  // the timeout came first
    todo[i].reset();
    --pending;
    done.push_back(i);
    if (pending == 0) timeout.cancel();
    wake();
  }
  void on_timeout() {
    for (std::size_t i = 0; i < todo.size(); ++i) {
      if (!todo[i]) continue;
      todo[i]->remove_done_callback(ids[i]);
      todo[i].reset();
      done.push_back(npos);
    }
    pending = 0;
    wake();
  }
};

AsCompletedCore::AsCompletedCore(const std::vector<FutureStateBase*>& futures,
                                 std::optional<double> timeout)
    : shared_(std::make_shared<Shared>()), left_(futures.size()) {
  std::weak_ptr<Shared> weak = shared_;
  Shared& s = *shared_;
  s.todo.reserve(futures.size());
  s.ids.reserve(futures.size());
  s.done.reserve(futures.size());
  s.pending = futures.size();
  for (std::size_t i = 0; i < futures.size(); ++i) {
    FutureStateBase* f = futures[i];
    s.todo.emplace_back(f);
    s.ids.push_back(f->add_done_callback([weak, i](FutureStateBase&) {
      if (auto sh = weak.lock()) sh->on_completion(i);
    }));
  }
  if (!futures.empty() && timeout) {
    s.timeout = get_running_loop().call_later(*timeout, [weak] {
      if (auto sh = weak.lock()) sh->on_timeout();
    });
  }
}

AsCompletedCore::~AsCompletedCore() {
  shared_->timeout.cancel();
  for (std::size_t i = 0; i < shared_->todo.size(); ++i) {
    if (shared_->todo[i]) shared_->todo[i]->remove_done_callback(shared_->ids[i]);
  }
}

std::size_t AsCompletedCore::next() {
  while (shared_->taken == shared_->done.size()) {
    shared_->waiter = get_running_loop().create_future<void>();
    Future<void> w = shared_->waiter;
    try {
      await_as(w, "as_completed()", std::source_location::current());
    } catch (...) {
      shared_->waiter = Future<void>();
      throw;
    }
    shared_->waiter = Future<void>();
  }
  std::size_t i = shared_->done[shared_->taken++];
  --left_;
  if (i == Shared::npos) throw TimeoutError("as_completed(): timed out");
  return i;
}

}  // namespace fiberloop::detail
