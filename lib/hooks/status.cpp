// status.cpp: the start-up check that the hooks are in effect, and the
// public status() and stats() (hooks.hpp).
#include <dlfcn.h>
#include <link.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fiberloop/hooks.hpp"
#include "libc_calls.hpp"
#include "loop_wait.hpp"

namespace fiberloop::hooks {
namespace {

// The file this library was loaded from.
const char* own_file() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&own_file), &info) == 0 || !info.dli_fname) return "";
  return info.dli_fname;
}

// A sanitizer's runtime comes first in every lookup and calls on to the
// next definition: whose that is decides whether a call reaches us.
bool sanitizer_runtime(const char* file) {
  return std::strstr(file, "libasan") || std::strstr(file, "libtsan") ||
         std::strstr(file, "libubsan") || std::strstr(file, "liblsan");
}

std::string defining_file(void* definition) {
  Dl_info info{};
  return definition && ::dladdr(definition, &info) && info.dli_fname ? info.dli_fname : "(none)";
}

// The file of the first loaded library, in lookup order and past the
// sanitizer runtimes, that defines `name` itself (dlsym on a library's
// handle finds its own definition before its dependencies'). The program
// is not looked at: a definition of its own comes ahead of the runtimes,
// and RTLD_DEFAULT has found it already.
std::string first_definer_past_sanitizers(const char* name) {
  struct Search {
    const char* name;
    std::string found;
  } search{name, "(none)"};
  ::dl_iterate_phdr(
      [](dl_phdr_info* object, std::size_t, void* data) {
        auto& search = *static_cast<Search*>(data);
        if (!object->dlpi_name || !*object->dlpi_name || sanitizer_runtime(object->dlpi_name)) return 0;
        void* handle = ::dlopen(object->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
        if (!handle) return 0;  // the vDSO
        std::string file = defining_file(::dlsym(handle, search.name));
        ::dlclose(handle);
        if (file != object->dlpi_name) return 0;
        search.found = file;
        return 1;
      },
      &search);
  return search.found;
}

Status check() {
  Status s;
  std::string own = own_file();
  for (int i = 0; i < kHookedCount; ++i) {
    std::string file = defining_file(::dlsym(RTLD_DEFAULT, kHookedNames[i]));
    if (sanitizer_runtime(file.c_str())) file = first_definer_past_sanitizers(kHookedNames[i]);
    if (own == file) continue;
    s.lost.emplace_back(kHookedNames[i]);
    s.lost_to.emplace_back(file);
  }
  s.in_effect = s.lost.empty();
  return s;
}

bool debug_mode() {
#ifdef NDEBUG
  const char* env = std::getenv("FIBERLOOP_DEBUG");
  return env && *env && std::strcmp(env, "0") != 0;
#else
  return true;  // a debug build of the library always checks
#endif
}

// At start-up, in debug mode: say so when a hooked call resolves elsewhere,
// since that call will block the loop with no other sign.
__attribute__((constructor)) void check_at_start() {
  libc();
  if (!debug_mode()) return;
  Status s = check();
  if (s.in_effect) return;
  std::string names;
  for (std::size_t i = 0; i < s.lost.size(); ++i) {
    names += (i ? ", " : "") + s.lost[i] + " (" + s.lost_to[i] + ")";
  }
  std::fprintf(stderr,
               "fiberloop-hooks: linked but not in effect for %s: these calls resolve to the "
               "object named first, so they block the loop. Link libfiberloop-hooks before "
               "it, or load it with LD_PRELOAD (docs/hooks.md).\n",
               names.c_str());
}

}  // namespace

Status status() { return check(); }

Stats stats() noexcept {
  Counters& c = counters();
  return {c.waits.load(std::memory_order_relaxed), c.sleeps.load(std::memory_order_relaxed),
          c.resolves.load(std::memory_order_relaxed), c.cancelled.load(std::memory_order_relaxed)};
}

}  // namespace fiberloop::hooks

// What fiberloop_hooks_dep names with -Wl,--undefined, so that a program
// whose own code calls no hooked function still keeps the library under
// --as-needed (it is the program's libraries that call them).
extern "C" __attribute__((visibility("default"))) const int fiberloop_hooks_linked = 1;
