// shadow_read.cpp: libshadow_read.so, a library that defines read() and
// forwards it to the next definition, as a profiler or another hooking
// library would. A program linked with it ahead of libfiberloop-hooks
// resolves read() here first, which the hooks' start-up check must report
// (report_test.cpp, hooks_report_shadowed_test).
#include <dlfcn.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>

#define SHADOW_API extern "C" __attribute__((visibility("default")))

namespace {

std::atomic<long> calls{0};

using ReadFn = ssize_t (*)(int, void*, size_t);

ReadFn next_read() {
  static const ReadFn next = [] {
    auto fn = reinterpret_cast<ReadFn>(::dlsym(RTLD_NEXT, "read"));
    if (!fn) std::abort();  // no read after this library: nothing can work
    return fn;
  }();
  return next;
}

}  // namespace

SHADOW_API ssize_t read(int fd, void* buf, size_t n) {
  calls.fetch_add(1, std::memory_order_relaxed);
  return next_read()(fd, buf, n);
}

// How many reads came through here: the test's proof that the program's
// read() is this one (and, under --as-needed, the reference that keeps the
// library in the program's DT_NEEDED).
SHADOW_API long fiberloop_shadow_read_calls() { return calls.load(std::memory_order_relaxed); }
