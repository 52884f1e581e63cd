// seed_future_basic: the seed's first program — a Future completed by a
// callback, driven by run_until_complete. Prints exactly what CPython prints.
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>

// mark_done is the callback: it completes the future.
void mark_done(fiberloop::Future<std::string> future, const std::string& result) {
  std::cout << "setting future result to " << result << "\n";
  future.set_result(result);
}

int main() {
  fiberloop::EventLoop event_loop;
  auto all_done = event_loop.create_future<std::string>();

  // Nothing runs yet: call_soon only queues mark_done.
  std::cout << "scheduling make_done\n";
  event_loop.call_soon(mark_done, all_done, std::string("the result"));

  // The loop runs mark_done, which completes all_done, which stops the loop.
  std::cout << "entering event loop\n";
  std::string result = event_loop.run_until_complete(all_done);
  std::cout << "returned result: " << result << "\n";

  std::cout << "closing event loop\n";
  event_loop.close();
  // The future keeps its result after the loop is closed.
  std::cout << "future result: " << all_done.result() << "\n";
}
