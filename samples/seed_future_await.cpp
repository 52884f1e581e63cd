// seed_future_await: the seed's second program — a task awaits a Future that
// a callback completes. The task is a plain function; await() blocks it.
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>

void mark_done(fiberloop::Future<std::string> future, const std::string& result) {
  std::cout << "setting future result to " << result << "\n";
  future.set_result(result);
}

// main_task runs on its own fiber: await() suspends it until all_done is done.
void main_task(fiberloop::EventLoop& loop) {
  auto all_done = loop.create_future<std::string>();
  std::cout << "scheduling mark_done\n";
  loop.call_soon(mark_done, all_done, std::string("the result"));
  std::string result = fiberloop::await(all_done);
  std::cout << "returned result: " << result << "\n";
}

int main() {
  fiberloop::EventLoop event_loop;
  // run_until_complete(fn, args...) wraps main_task in a Task and runs it to the end.
  event_loop.run_until_complete(main_task, std::ref(event_loop));
  event_loop.close();
}
