// blocking_style: the README's example — two tasks and a timer, awaited in
// plain blocking style; they overlap, so it takes 0.1 s, not 0.2 s.
#include <fiberloop/fiberloop.hpp>
#include <iostream>

// An ordinary function: it blocks its own task, never the loop.
int slow_square(int x) {
  fiberloop::sleep(0.1);  // the loop runs other tasks meanwhile
  return x * x;
}

int main() {
  int total = fiberloop::run([] {               // asyncio.run: a loop, a main task, cleanup
    auto a = fiberloop::spawn(slow_square, 3);  // both run concurrently...
    auto b = fiberloop::spawn(slow_square, 4);
    auto& loop = fiberloop::get_running_loop();
    auto later = loop.create_future<int>();
    loop.call_later(0.05, [later] { later.set_result(100); });
    return fiberloop::await(a) + fiberloop::await(b) + fiberloop::await(later);
  });
  std::cout << total << "\n";  // 125, after 0.1 s rather than 0.2 s
}
