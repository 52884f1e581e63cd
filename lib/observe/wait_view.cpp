#include "wait_view.hpp"

#include <cstring>

namespace fiberloop::detail {
namespace {

// The library's waits by the name they park with (TaskStateBase::WaitSite),
// and the schema's kind for each: compared at dump time only, so that a
// wait stores one pointer.
struct KindOf {
  const char* call_prefix;
  const char* kind;
};
constexpr KindOf kKinds[] = {
    {"sleep()", "sleep"},          {"wait_readable()", "fd"},   {"wait_writable()", "fd"},
    {"Lock.", "lock"},             {"Event.", "event"},         {"Condition.", "condition"},
    {"Semaphore.", "semaphore"},   {"Barrier.", "barrier"},     {"Queue.", "queue"},
    {"gather()", "gather"},        {"TaskGroup", "task_group"}, {"wait()", "wait"},
    {"wait_for()", "wait"},        {"as_completed()", "wait"},  {"to_thread()", "to_thread"},
    {"Server.", "server"},         {"StreamWriter.", "stream"},
};

const char* kind_of(const char* call, FutureStateBase* awaited) {
  if (call) {
    for (const KindOf& k : kKinds) {
      if (std::strncmp(call, k.call_prefix, std::strlen(k.call_prefix)) == 0) return k.kind;
    }
  }
  return dynamic_cast<TaskStateBase*>(awaited) ? "task" : "future";
}

double seconds(std::int64_t ns) { return static_cast<double>(ns) / 1e9; }

}  // namespace

WaitView view_wait(TaskStateBase& task, const TaskStateBase* running) {
  WaitView view;
  const TaskStateBase::WaitSite& site = task.wait_site();
  view.call = site.what;
  view.where = site.where;
  view.since = seconds(site.since_ns);
  view.started = task.started();
  if (&task == running) {
    view.state = "running";
  } else if (task.done()) {
    view.state = "done";
  } else if (FutureStateBase* awaited = task.awaiting(); awaited || task.parked()) {
    view.state = "waiting";
    view.kind = kind_of(site.what, awaited);
    if (std::strcmp(view.kind, "sleep") == 0) view.deadline = seconds(site.arg);
    if (std::strcmp(view.kind, "fd") == 0) {
      view.fd = static_cast<int>(site.arg);
      view.writable = std::strcmp(site.what, "wait_writable()") == 0;
    }
    if (std::strcmp(view.kind, "task") == 0) view.task = dynamic_cast<TaskStateBase*>(awaited);
  }
  return view;
}

}  // namespace fiberloop::detail
