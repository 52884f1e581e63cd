// loop_group.hpp: LoopGroup, a loop per core — share nothing, move work explicitly.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiberloop/event_loop.hpp"
#include "fiberloop/export.hpp"

namespace fiberloop {

// LoopGroupOptions: pin_threads pins loop i's thread to the i-th CPU this
// process may run on (round robin past the last); debug is
// EventLoop::set_debug on every loop.
struct LoopGroupOptions {
  bool pin_threads = false;
  bool debug = false;
};

// LoopGroup runs one EventLoop per thread, Seastar's and Photon's model: a
// task and its futures belong to its loop, so nothing on a hot path takes a
// lock or an atomic; work moves between loops explicitly, with submit() and
// run_on() (submit.hpp). Each loop keeps its own stacks, pools and default
// executor. A server on every core is start_server(..., {.reuse_port =
// true}) on each loop: the kernel spreads the connections.
//
// Example:
//   fiberloop::LoopGroup group;  // one loop per core this process may use
//   group.run([](std::size_t index) {
//     auto server = net::start_server(handler, "0.0.0.0", 8080, {.reuse_port = true});
//     server.serve_forever();
//   });
//
// run(fn) starts size() threads, runs fn(index) as the main task of loop
// `index` on each, and returns when every main task has ended, with their
// results in index order (a std::vector, or void). The first main task to
// fail (an exception, or a cancellation the group did not ask for) makes the
// group cancel the others' main tasks, and run() rethrows that exception
// once all have ended. Each loop then shuts down as fiberloop::run()'s does
// (the tasks left are cancelled and waited for, the loop is closed); the
// loops are destroyed only once every loop is closed, so a loop may submit
// to another until the end (a closed one refuses with RuntimeError).
//
// The calling thread waits on a loop of its own that takes Ctrl-C as
// fiberloop::run() does: the first SIGINT cancels every main task and run()
// throws KeyboardInterrupt; a second one ends the process. The group's
// threads block asynchronous signals.
//
// loop(i) is loop i while run() runs, from any thread (for submit() and
// call_soon_threadsafe): every loop exists before any main task starts.
//
// Throws std::invalid_argument for 0 loops or more than kMaxLoops;
// RuntimeError from run() when called on a thread that runs a loop, or while
// the group runs already; std::system_error when a thread or a loop cannot
// be made (the loops made so far are closed first).
class FIBERLOOP_API LoopGroup {
 public:
  static constexpr std::size_t kMaxLoops = 1024;

  // available_cores() is how many CPUs this process may run on
  // (sched_getaffinity), at least 1.
  static std::size_t available_cores() noexcept;

  explicit LoopGroup(std::size_t loops = available_cores(), LoopGroupOptions options = {});
  ~LoopGroup();
  LoopGroup(const LoopGroup&) = delete;
  LoopGroup& operator=(const LoopGroup&) = delete;

  std::size_t size() const noexcept { return size_; }

  // loop(i): see above. Throws std::out_of_range for i >= size() and
  // RuntimeError when the group is not running.
  EventLoop& loop(std::size_t index) const;

  template <class Fn>
    requires std::is_invocable_v<Fn&, std::size_t>
  auto run(Fn&& fn) {
    using R = std::invoke_result_t<Fn&, std::size_t>;
    static_assert(!std::is_reference_v<R>, "LoopGroup::run(): fn must return a value");
    if constexpr (std::is_void_v<R>) {
      run_mains([&fn](std::size_t index) { fn(index); });
    } else {
      // Slot i is written by loop i's thread only; read here after the join.
      std::vector<std::optional<R>> slots(size_);
      run_mains([&fn, &slots](std::size_t index) { slots[index].emplace(fn(index)); });
      std::vector<R> results;
      results.reserve(size_);
      for (auto& slot : slots) results.push_back(std::move(*slot));
      return results;
    }
  }

  struct Run;  // one run's shared state (lib/threads/loop_group.cpp)

 private:
  void run_mains(std::function<void(std::size_t)> main);

  std::size_t size_;
  LoopGroupOptions options_;
  Run* running_ = nullptr;  // set by run_mains for its duration
};

}  // namespace fiberloop
