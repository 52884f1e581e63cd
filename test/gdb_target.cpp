// gdb_target: the process test/gdb_dump_test.sh inspects with
// tools/fiberloop-gdb.py. It parks a task in each kind of wait the test
// names, then stops inside its running loop, in a plain callback (no task
// runs): `gdb_target pause` prints "ready ..." and sleeps in pause() for gdb
// to attach; `gdb_target trap` raises SIGTRAP, for when it runs under gdb.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fiberloop/fiberloop.hpp>

// The lines the waits are made on, printed for the test to look for.
int sleep_line = 0;
int lock_line = 0;
int await_line = 0;

// External, unmistakable names the backtraces must show. (The empty asm
// after each wait keeps it from being a tail call, which would take the
// function's frame off the stack.)
[[gnu::noinline]] void gdb_target_sleeps_in_here() {
  sleep_line = __LINE__; fiberloop::sleep(1000);
  asm volatile("" ::: "memory");
}
[[gnu::noinline]] void gdb_target_waits_for_lock(fiberloop::Lock& lock) {
  lock_line = __LINE__; lock.acquire();
  asm volatile("" ::: "memory");
  lock.release();
}

int main(int argc, char** argv) {
  bool trap = argc > 1 && std::strcmp(argv[1], "trap") == 0;
  fiberloop::EventLoop loop;
  fiberloop::Lock lock;
  auto holder = loop.create_task({.name = "holder"}, [&] {
    lock.acquire();
    fiberloop::sleep(1000);
  });
  auto sleeper = loop.create_task({.name = "sleeper"}, gdb_target_sleeps_in_here);
  auto locker = loop.create_task({.name = "locker"}, [&] { gdb_target_waits_for_lock(lock); });
  auto awaiter = loop.create_task({.name = "awaiter"}, [sleeper] {
    await_line = __LINE__; fiberloop::await(sleeper);
    asm volatile("" ::: "memory");
  });
  // An unnamed task: the dump calls it Task-<number>.
  auto unnamed = loop.create_task([] { fiberloop::sleep(1000); });
  // A few iterations for every task to reach its wait, then stop in a
  // callback: the loop is running (gdb finds it) and no task is.
  loop.call_later(0.05, [&] {
    std::printf("ready sleep_line=%d lock_line=%d await_line=%d\n", sleep_line, lock_line,
                await_line);
    std::fflush(stdout);
    if (trap) {
      ::raise(SIGTRAP);
      return;
    }
    for (;;) ::pause();
  });
  loop.call_later(0.1, [&] { loop.stop(); });
  loop.run_forever();
  holder.cancel();
  sleeper.cancel();
  locker.cancel();
  awaiter.cancel();
  unnamed.cancel();
  loop.run_until_complete([] {});
  return 0;
}
