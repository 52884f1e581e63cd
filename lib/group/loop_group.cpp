#include "fiberloop/loop_group.hpp"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "../base/async_signals_blocked.hpp"
#include "fiberloop/event.hpp"
#include "fiberloop/await.hpp"
#include "fiberloop/completer.hpp"
#include "fiberloop/signals.hpp"
#include "fiberloop/task_dump.hpp"

namespace fiberloop {
namespace {

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

void pin_this_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  int err = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
  if (err != 0)
    throw std::system_error(err, std::generic_category(),
                            "LoopGroup: pinning a loop's thread to CPU " + std::to_string(cpu));
}

}  // namespace

// Run is one run()'s state. members[i] is touched by loop i's thread, but
// for two things: the supervisor (the calling thread) moves each Completer
// in before the threads start, and posts to a member's loop (the loop lives
// from before `start` until after `release`, so the reference stays good).
struct LoopGroup::Run {
  struct Member {
    std::optional<EventLoop> loop;
    std::optional<Task<void>> main;
    Completer<void> ended;
  };

  explicit Run(std::size_t n, std::function<void(std::size_t)> fn)
      : members(n), main_fn(std::move(fn)) {}

  std::vector<Member> members;
  std::function<void(std::size_t)> main_fn;
  std::vector<int> cpus;  // pin targets; empty: no pinning

  // The start gate: every loop is made before any main task starts.
  std::mutex mutex;
  std::condition_variable changed;
  std::size_t made = 0;             // guarded by mutex
  bool start = false;               // guarded by mutex
  bool abort = false;               // guarded by mutex
  std::exception_ptr make_error;    // guarded by mutex
  std::atomic<bool> stopping{false};  // the group cancels: a main's CancelledError is no failure
  std::latch release{1};            // the loops may go: every one is closed

  void serve(std::size_t index, bool debug);
  void stop_all() noexcept;
};

void LoopGroup::Run::serve(std::size_t index, bool debug) {
  Member& me = members[index];
  std::exception_ptr error;
  try {
    if (!cpus.empty()) pin_this_thread(cpus[index % cpus.size()]);
    me.loop.emplace();
    me.loop->set_debug(debug);
    if (index == 0) detail::enable_dump_from_environment(*me.loop);
  } catch (...) {
    error = std::current_exception();
  }
  {
    std::unique_lock lock(mutex);
    ++made;
    if (error && !make_error) make_error = error;
    changed.notify_all();
    changed.wait(lock, [this] { return start || abort; });
    if (abort) {
      lock.unlock();
      me.loop.reset();
      return;
    }
  }
  try {
    me.main = me.loop->create_task([this, index] { main_fn(index); });
    me.loop->run_until_complete(*me.main);
  } catch (const CancelledError&) {
    if (!stopping.load(std::memory_order_acquire)) error = std::current_exception();
  } catch (...) {
    error = std::current_exception();
  }
  detail::finish_run(*me.loop);
  me.main.reset();
  // Failing to post (out of memory) still ends the future: the completer's
  // destructor reports it abandoned.
  try {
    if (error) {
      me.ended.set_exception(std::move(error));
    } else {
      me.ended.set_result();
    }
  } catch (...) {
    me.ended = Completer<void>();
  }
  release.wait();
  me.loop.reset();
}

void LoopGroup::Run::stop_all() noexcept {
  stopping.store(true, std::memory_order_release);
  for (Member& m : members) {
    try {
      // The main task is read on its own thread, where this callback runs.
      m.loop->call_soon_threadsafe([&m] {
        if (m.main && !m.main->done()) m.main->cancel();
      });
    } catch (...) {
      // Closed: that loop's main task has ended already.
    }
  }
}

std::size_t LoopGroup::available_cores() noexcept {
  try {
    std::size_t n = allowed_cpus().size();
    if (n) return n;
  } catch (...) {
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

LoopGroup::LoopGroup(std::size_t loops, LoopGroupOptions options)
    : size_(loops), options_(options) {
  if (loops == 0) throw std::invalid_argument("LoopGroup: needs at least one loop");
  if (loops > kMaxLoops)
    throw std::invalid_argument("LoopGroup: " + std::to_string(loops) + " loops, over the " +
                                std::to_string(kMaxLoops) + " allowed");
}

LoopGroup::~LoopGroup() = default;

EventLoop& LoopGroup::loop(std::size_t index) const {
  if (index >= size_)
    throw std::out_of_range("LoopGroup::loop(" + std::to_string(index) + "): the group has " +
                            std::to_string(size_) + " loops");
  if (!running_) throw RuntimeError("LoopGroup::loop(): the group is not running");
  return *running_->members[index].loop;
}

void LoopGroup::run_mains(std::function<void(std::size_t)> main) {
  detail::check_no_running_loop("LoopGroup::run()");
  if (running_) throw RuntimeError("LoopGroup::run(): the group is running already");

  EventLoop supervisor;  // the calling thread's: Ctrl-C, and each main's end
  Run run(size_, std::move(main));
  if (options_.pin_threads) run.cpus = allowed_cpus();
  std::vector<Future<void>> ended;
  ended.reserve(size_);
  for (auto& m : run.members) {
    ended.push_back(supervisor.create_future<void>());
    m.ended = Completer<void>(ended.back());
  }

  // Threads joins the group's threads on every way out of here: before the
  // start, by aborting them; after it, once their loops may go (if this
  // thread failed before the mains ended, it cancels them first).
  struct Threads {
    Run& run;
    Run*& running;
    std::vector<std::thread> list;
    bool started = false;
    bool all_ended = false;
    void join() noexcept {
      if (!started) {
        {
          std::lock_guard lock(run.mutex);
          run.abort = true;
        }
        run.changed.notify_all();
      } else if (running) {
        if (!all_ended) run.stop_all();
        run.release.count_down();
      }
      for (auto& t : list) t.join();
      list.clear();
      running = nullptr;
    }
    ~Threads() { join(); }
  } threads{run, running_, {}};
  threads.list.reserve(size_);
  {
    detail::AsyncSignalsBlocked born_blocked;
    for (std::size_t i = 0; i < size_; ++i)
      threads.list.emplace_back([&run, i, debug = options_.debug] { run.serve(i, debug); });
  }
  {
    std::unique_lock lock(run.mutex);
    run.changed.wait(lock, [&] { return run.made == size_; });
    if (run.make_error) std::rethrow_exception(run.make_error);  // ~Threads aborts them
    running_ = &run;
    run.start = true;
    threads.started = true;
  }
  run.changed.notify_all();

  // The supervisor waits for every main task's end; the first failure
  // cancels the others.
  struct Watch {
    Run& run;
    std::exception_ptr first_failure;
    std::size_t left;
    Event all_ended;
  } watch{run, nullptr, size_, {}};
  for (auto& f : ended) {
    f.add_done_callback([&watch](const Future<void>& done) {
      std::exception_ptr error = done.cancelled() ? nullptr : done.exception();
      if (error && !watch.first_failure) {
        watch.first_failure = error;
        watch.run.stop_all();
      }
      if (--watch.left == 0) watch.all_ended.set();
    });
  }
  // An Event, not a future: cancelling the wait (Ctrl-C) leaves it to wait on again.
  auto wait_for_all = [&watch] { watch.all_ended.wait(); };
  auto waiter = supervisor.create_task(wait_for_all);
  detail::CtrlC ctrl_c(supervisor, waiter);
  bool interrupted = false;
  try {
    supervisor.run_until_complete(waiter);
  } catch (const CancelledError&) {
    interrupted = ctrl_c.interrupted();
    run.stop_all();
    supervisor.run_until_complete(wait_for_all);
  }
  threads.all_ended = true;
  threads.join();
  detail::finish_run(supervisor);
  if (watch.first_failure) std::rethrow_exception(watch.first_failure);
  if (interrupted) throw KeyboardInterrupt();
}

}  // namespace fiberloop
