// A program that links the hooks through the subproject's
// dependency('fiberloop-hooks'), as docs/hooks.md shows: libc's sleep in 100
// tasks takes one sleep's time, not 100, because the hooks are in effect.
#include <chrono>
#include <cstdio>
#include <fiberloop/fiberloop.hpp>
#include <fiberloop/hooks.hpp>
#include <thread>
#include <vector>

int main() {
  if (!fiberloop::hooks::status().in_effect) {
    std::fprintf(stderr, "consumer_hooked: the hooks are linked but not in effect\n");
    return 1;
  }
  auto start = std::chrono::steady_clock::now();
  fiberloop::run([] {
    std::vector<fiberloop::Task<void>> sleepers;
    for (int i = 0; i < 100; ++i)
      sleepers.push_back(fiberloop::spawn([] { std::this_thread::sleep_for(std::chrono::milliseconds(50)); }));
    for (auto& t : sleepers) fiberloop::await(t);
  });
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // One after another, the sleeps would take 5 s.
  if (took < 0.05 || took > 2.5) {
    std::fprintf(stderr, "consumer_hooked: 100 sleeps of 50 ms took %.3f s\n", took);
    return 1;
  }
  std::printf("consumer_hooked: 100 sleeps overlapped\n");
  return 0;
}
