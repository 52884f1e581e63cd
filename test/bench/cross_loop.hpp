// cross_loop.hpp: the two-loop set-up and the call_soon_threadsafe floor
// shared by submit_bench (time) and op_count (instructions).
#pragma once

#include <fiberloop/fiberloop.hpp>

namespace bench {

// Bounce is the floor under submit(): a callback posted to `there` that
// posts one back to `here`, one trip after another (chained) or a burst at
// once. Only here's thread touches `left` and `done`.
struct Bounce {
  fiberloop::EventLoop* here;
  fiberloop::EventLoop* there;
  long left;
  bool chained;
  fiberloop::Future<void> done = here->create_future<void>();

  void send_one() {
    there->call_soon_threadsafe([this] { here->call_soon_threadsafe([this] { answer(); }); });
  }
  void answer() {
    if (--left == 0)
      done.set_result();
    else if (chained)
      send_one();
  }
};

// on_loop_0_of_two(body) runs body(loop 1) as loop 0's main task of a
// pinned two-loop group; loop 1 serves until body returns.
template <class Body>
void on_loop_0_of_two(Body body) {
  fiberloop::LoopGroup group(2, {.pin_threads = true});
  fiberloop::Event finished;  // loop 1's, set through run_on
  group.run([&](std::size_t index) {
    if (index == 1) return finished.wait();
    body(group.loop(1));
    fiberloop::run_on(group.loop(1), [&finished] { finished.set(); });
  });
}

}  // namespace bench
