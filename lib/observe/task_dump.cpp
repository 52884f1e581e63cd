// EventLoop::dump_tasks(): every live task, where it waits and its stack.
#include <arpa/inet.h>
#include <execinfo.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "dump_writer.hpp"
#include "fiberloop/event_loop.hpp"
#include "../base/symbols.hpp"
#include "wait_view.hpp"

namespace fiberloop {
namespace {

using detail::TaskStateBase;

// A stack walk stops here: the frames that matter are the innermost.
constexpr int kMaxFrames = 64;

// Edges is the one index the dump builds, for "awaited by" and the cycles:
// each task parked on another task, sorted by the awaited one.
struct Edge {
  const void* awaited;
  TaskStateBase* waiter;
  bool operator<(const Edge& o) const noexcept { return awaited < o.awaited; }
};

// The indexes are sized once: their growth would allocate log(n) times.
std::vector<TaskStateBase*> live_tasks_oldest_first(detail::LoopCore& core) {
  std::size_t count = 0;
  for (detail::LiveTask* t = core.first_live(); t; t = t->next_live) ++count;
  std::vector<TaskStateBase*> tasks;
  tasks.reserve(count);
  for (detail::LiveTask* t = core.first_live(); t; t = t->next_live)
    tasks.push_back(&TaskStateBase::of(*t));
  std::reverse(tasks.begin(), tasks.end());  // the list is newest first
  return tasks;
}

std::vector<Edge> awaiting_edges(const std::vector<TaskStateBase*>& tasks) {
  std::vector<Edge> edges;
  edges.reserve(tasks.size());
  for (TaskStateBase* t : tasks) {
    if (auto* awaited = dynamic_cast<TaskStateBase*>(t->awaiting())) edges.push_back({awaited, t});
  }
  std::sort(edges.begin(), edges.end());
  return edges;
}

// peer_of(fd, buf) is the address of the socket's peer ("" for no socket
// or no peer), written into buf.
const char* peer_of(int fd, char (&buf)[160]) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  buf[0] = '\0';
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return buf;
  char host[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    std::snprintf(buf, sizeof buf, "%s:%u", host, ntohs(in->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    std::snprintf(buf, sizeof buf, "[%s]:%u", host, ntohs(in6->sin6_port));
  } else if (ss.ss_family == AF_UNIX) {
    auto* un = reinterpret_cast<sockaddr_un*>(&ss);
    std::snprintf(buf, sizeof buf, "unix:%s", un->sun_path[0] ? un->sun_path : "(unnamed)");
  }
  return buf;
}

// stack_of(task, running, frames) walks the task's stack: the parked
// fiber's in place, the dumping task's own here.
int stack_of(TaskStateBase& task, const TaskStateBase* running, void** frames) {
  if (&task == running) return ::backtrace(frames, kMaxFrames);
  return task.backtrace(frames, kMaxFrames);
}

class Dump {
 public:
  Dump(EventLoop& loop, std::ostream& out, DumpFormat format)
      : loop_(loop), out_(out, format), now_(loop.time()),
        running_(detail::running_task()) {}

  void write() {
    std::vector<TaskStateBase*> tasks = live_tasks_oldest_first(loop_.core());
    std::vector<Edge> edges = awaiting_edges(tasks);
    by_number_ = tasks;
    std::sort(by_number_.begin(), by_number_.end(),
              [](auto* a, auto* b) { return a->number() < b->number(); });
    out_.begin_dump(tasks.size(), now_);
    for (TaskStateBase* t : tasks) write_task(*t, edges);
    out_.end_tasks();
    write_cycles(tasks);
    out_.end_dump();
  }

 private:
  void write_task(TaskStateBase& task, const std::vector<Edge>& edges) {
    detail::WaitView wait = detail::view_wait(task, running_);
    out_.begin_task(task, wait.state);
    if (wait.call) write_wait(wait);
    auto [first, last] = std::equal_range(edges.begin(), edges.end(), Edge{&task, nullptr});
    out_.begin_list("awaited_by");
    for (auto e = first; e != last; ++e) out_.task_ref(*e->waiter);
    out_.end_list();
    out_.parent(find_parent(task));
    write_stack(task, wait.started);
    out_.end_task();
  }

  void write_wait(const detail::WaitView& wait) {
    char peer[160];
    detail::DumpWriter::Wait w{wait.state, wait.kind, wait.call, wait.where, wait.since,
                               now_ - wait.since};
    if (std::string_view(wait.kind) == "sleep") w.deadline = &wait.deadline;
    if (wait.fd >= 0) {
      w.fd = wait.fd;
      w.direction = wait.writable ? "writable" : "readable";
      w.peer = peer_of(wait.fd, peer);
    }
    w.task = wait.task;
    out_.wait(w);
  }

  const TaskStateBase* find_parent(const TaskStateBase& task) {
    unsigned long number = task.parent_number();
    if (!number) return nullptr;
    auto it = std::lower_bound(by_number_.begin(), by_number_.end(), number,
                               [](auto* t, unsigned long n) { return t->number() < n; });
    // Not found: it ended first (a group's parent waits for its children,
    // but an unwinding may end it sooner).
    return it != by_number_.end() && (*it)->number() == number ? *it : nullptr;
  }

  void write_stack(TaskStateBase& task, bool started) {
    out_.begin_stack(started);
    void* frames[kMaxFrames];
    int n = started ? stack_of(task, running_, frames) : 0;
    for (int i = 0; i < n; ++i) out_.frame(i, frames[i], symbols_.lookup(frames[i]));
    out_.end_stack();
  }

  // write_cycles(tasks): a task awaiting a task awaiting ... the first.
  // Each task awaits at most one, so a walk from each finds any cycle.
  void write_cycles(const std::vector<TaskStateBase*>& tasks) {
    std::vector<TaskStateBase*> sorted(tasks);
    std::sort(sorted.begin(), sorted.end());
    std::vector<unsigned char> mark(sorted.size(), 0);  // 0 new, 1 on this walk, 2 seen
    auto index = [&](TaskStateBase* t) -> std::ptrdiff_t {
      auto it = std::lower_bound(sorted.begin(), sorted.end(), t);
      return it != sorted.end() && *it == t ? it - sorted.begin() : -1;
    };
    auto next = [](TaskStateBase* t) { return dynamic_cast<TaskStateBase*>(t->awaiting()); };
    out_.begin_cycles();
    for (TaskStateBase* start : tasks) {
      TaskStateBase* t = start;
      std::ptrdiff_t i = index(t);
      while (t && i >= 0 && mark[i] == 0) {
        mark[i] = 1;
        t = next(t);
        i = t ? index(t) : -1;
      }
      if (t && i >= 0 && mark[i] == 1) write_cycle(t, next);
      for (TaskStateBase* u = start; u && (i = index(u)) >= 0 && mark[i] == 1; u = next(u))
        mark[i] = 2;
    }
    out_.end_cycles();
  }

  template <class Next>
  void write_cycle(TaskStateBase* first, Next next) {
    out_.begin_cycle();
    TaskStateBase* t = first;
    do {
      out_.task_ref(*t);
      t = next(t);
    } while (t != first);
    out_.task_ref(*first);
    out_.end_cycle();
  }

  EventLoop& loop_;
  detail::DumpWriter out_;
  double now_;
  TaskStateBase* running_;
  std::vector<TaskStateBase*> by_number_;  // find_parent()'s index
  detail::Symbolizer symbols_;
};

}  // namespace

void EventLoop::dump_tasks(std::ostream& out, DumpFormat format) {
  if (std::this_thread::get_id() != core_.thread_id())
    throw RuntimeError("dump_tasks(): called from a thread other than the loop's");
  Dump(*this, out, format).write();
}

}  // namespace fiberloop
