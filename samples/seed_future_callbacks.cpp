// seed_future_callbacks: the seed's third program — done-callbacks run in
// the order they were registered, each scheduled by the loop, never inline.
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>

void callback(const fiberloop::Future<std::string>& future, int n) {
  std::cout << n << ": future done: " << future.result() << "\n";
}

void register_callbacks(const fiberloop::Future<std::string>& all_done) {
  std::cout << "registering callbacks on future\n";
  // A lambda plays functools.partial: it binds n.
  all_done.add_done_callback([](const fiberloop::Future<std::string>& f) { callback(f, 1); });
  all_done.add_done_callback([](const fiberloop::Future<std::string>& f) { callback(f, 2); });
}

void main_task(fiberloop::Future<std::string> all_done) {
  register_callbacks(all_done);
  std::cout << "setting result of future\n";
  // set_result schedules both callbacks; they run after main_task returns.
  all_done.set_result("the result");
}

int main() {
  fiberloop::EventLoop event_loop;
  auto all_done = event_loop.create_future<std::string>();
  event_loop.run_until_complete(main_task, all_done);
  event_loop.close();
}
