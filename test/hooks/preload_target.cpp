// preload_target.cpp: a program linked with fiberloop only, not with the
// hooks, whose tasks sleep with std::this_thread::sleep_for, as code that
// knows nothing of fiberloop does. Run as is, each sleep holds the loop
// thread and the sleeps add up; run with LD_PRELOAD=libfiberloop-hooks.so,
// they are sleeps on the loop's timers and overlap (preload_test.sh).
//   preload_target [TASKS]   (default 200)
// prints: "tasks N hooks yes|no elapsed SECONDS"
#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  int tasks = argc > 1 ? std::atoi(argv[1]) : 200;
  if (tasks <= 0) {
    std::fprintf(stderr, "usage: preload_target [TASKS > 0]\n");
    return 2;
  }
  // Whether the hooks were loaded: the symbol that fiberloop_hooks_dep
  // names to keep the library (status.cpp), looked up, not linked to.
  bool hooked = ::dlsym(RTLD_DEFAULT, "fiberloop_hooks_linked") != nullptr;
  auto t0 = std::chrono::steady_clock::now();
  fiberloop::run([tasks] {
    std::vector<fiberloop::Task<void>> all;
    for (int i = 0; i < tasks; ++i)
      all.push_back(fiberloop::spawn([] { std::this_thread::sleep_for(std::chrono::milliseconds(100)); }));
    for (auto& task : all) fiberloop::await(task);
  });
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tasks %d hooks %s elapsed %.3f\n", tasks, hooked ? "yes" : "no", elapsed);
  return 0;
}
