// dump_bench.cpp: what a task dump of many parked tasks costs, per task, as
// a multiple of spawning and parking one task measured in the same run.
//   dump_bench [TASKS]   (default 100000)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fiberloop/fiberloop.hpp>
#include <ostream>
#include <vector>

#include "../discard_stream.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  long tasks = argc > 1 ? std::atol(argv[1]) : 100000;
  fiberloop::run([tasks] {
    std::vector<fiberloop::Task<void>> parked;
    parked.reserve(static_cast<std::size_t>(tasks));
    Clock::time_point start = Clock::now();
    for (long i = 0; i < tasks; ++i) parked.push_back(fiberloop::spawn([] { fiberloop::sleep(1e6); }));
    fiberloop::sleep(0);
    double spawn_park = seconds_since(start) / static_cast<double>(tasks);
    for (auto format : {fiberloop::DumpFormat::text, fiberloop::DumpFormat::json}) {
      DiscardStream sink;
      std::ostream out(&sink);
      start = Clock::now();
      fiberloop::get_running_loop().dump_tasks(out, format);
      double total = seconds_since(start);
      double per_task = total / static_cast<double>(tasks);
      std::printf("dump %-5s %ld tasks: %.3f s, %.0f ns/task (%.1fx spawn+park), %.0f bytes/task\n",
                  format == fiberloop::DumpFormat::text ? "text" : "json", tasks, total,
                  per_task * 1e9, per_task / spawn_park, static_cast<double>(sink.written) / tasks);
    }
    std::printf("spawn+park: %.0f ns/task\n", spawn_park * 1e9);
    for (auto& t : parked) t.cancel();
    fiberloop::sleep(0);
  });
}
