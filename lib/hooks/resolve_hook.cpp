// resolve_hook.cpp: getaddrinfo inside a task runs on the loop's default
// executor (to_thread), as asyncio's loop.getaddrinfo does: libc's resolver
// has no non-blocking form.
#include <netdb.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <string>

#include "fiberloop/errors.hpp"
#include "fiberloop/executor.hpp"
#include "libc_calls.hpp"
#include "loop_wait.hpp"

#define HOOK extern "C" __attribute__((visibility("default")))

namespace fiberloop::hooks {
namespace {

struct FreeAddrinfo {
  void operator()(addrinfo* list) const noexcept {
    if (list) ::freeaddrinfo(list);
  }
};

// Resolved is the worker's answer; the list is freed if the task that
// asked was cancelled and never takes it.
struct Resolved {
  int status = 0;
  int error = 0;  // errno, for EAI_SYSTEM
  std::unique_ptr<addrinfo, FreeAddrinfo> list;
};

std::optional<std::string> copy_of(const char* s) {
  if (!s) return std::nullopt;
  return std::string(s);
}

}  // namespace
}  // namespace fiberloop::hooks

using namespace fiberloop::hooks;

HOOK int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  if (!in_task()) return libc().getaddrinfo(node, service, hints, res);
  try {
    // Copies: a cancelled caller's strings may be gone while the worker runs.
    std::optional<addrinfo> hint;
    if (hints) {
      hint.emplace();
      *hint = addrinfo{};
      hint->ai_flags = hints->ai_flags;
      hint->ai_family = hints->ai_family;
      hint->ai_socktype = hints->ai_socktype;
      hint->ai_protocol = hints->ai_protocol;
    }
    Resolved resolved = fiberloop::to_thread(
        [host = copy_of(node), port = copy_of(service), hint]() {
          Resolved r;
          addrinfo* list = nullptr;
          r.status = libc().getaddrinfo(host ? host->c_str() : nullptr,
                                        port ? port->c_str() : nullptr,
                                        hint ? &*hint : nullptr, &list);
          r.error = errno;
          r.list.reset(list);
          return r;
        });
    counters().resolves.fetch_add(1, std::memory_order_relaxed);
    *res = resolved.list.release();
    errno = resolved.error;
    return resolved.status;
  } catch (const fiberloop::CancelledError& e) {
    keep_cancellation(e.message().c_str());
    errno = ECANCELED;
    return EAI_SYSTEM;
  } catch (const std::bad_alloc&) {
    return EAI_MEMORY;
  } catch (const std::exception&) {
    // No executor thread could start (or the loop is closing): resolve
    // here, blocking, rather than fail a lookup that can succeed.
    return libc().getaddrinfo(node, service, hints, res);
  }
}
