// Minimal program built against fiberloop used as a meson subproject.
#include <cstdio>
#include <fiberloop/fiberloop.hpp>

int main() {
  const int value = fiberloop::run([] {
    fiberloop::sleep(0.01);
    auto& loop = fiberloop::get_running_loop();
    auto f = loop.create_future<int>();
    loop.call_soon([f]() mutable { f.set_result(42); });
    return fiberloop::await(f);
  });
  if (value != 42) {
    std::fprintf(stderr, "consumer: expected 42, got %d\n", value);
    return 1;
  }
  std::printf("consumer got %d\n", value);
  return 0;
}
