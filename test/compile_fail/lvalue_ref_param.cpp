// Must not compile: a task's function takes `int&`, and the argument is passed
// without std::ref (the task would silently change its own copy).
#include <fiberloop/fiberloop.hpp>

void bump(int& counter) { ++counter; }

int main() {
  fiberloop::EventLoop loop;
  int counter = 0;
  loop.create_task(bump, counter);
}
