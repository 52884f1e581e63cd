#include "dump_writer.hpp"

#include <cstdio>
#include <cstring>
#include <ostream>

namespace fiberloop::detail {
namespace {

// The schema's version: a reader checks it (docs/observability.md).
constexpr int kSchemaVersion = 1;

}  // namespace

void DumpWriter::string(const char* s) {
  out_ << '"';
  const char* run = s ? s : "";  // the characters that need no escape, written at once
  const char* p = run;
  for (; *p; ++p) {
    auto c = static_cast<unsigned char>(*p);
    if (c != '"' && c != '\\' && c >= 0x20) continue;
    out_.write(run, p - run);
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = *p, esc[2] = '\0';
    } else {
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
    }
    out_ << esc;
    run = p + 1;
  }
  out_.write(run, p - run);
  out_ << '"';
}

void DumpWriter::comma() {
  if (!first_item_) out_ << ',';
  first_item_ = false;
}

void DumpWriter::name_of(const TaskStateBase& task) {
  StackLabel label = task.label();
  char numbered[32];
  const char* name = label.name && !label.name->empty() ? label.name->c_str() : nullptr;
  if (!name) {
    std::snprintf(numbered, sizeof numbered, "Task-%lu", static_cast<unsigned long>(label.number));
    name = numbered;
  }
  if (json_) {
    string(name);
  } else {
    out_ << '"' << name << '"';
  }
}

void DumpWriter::begin_dump(std::size_t tasks, double now) {
  char at[32];
  std::snprintf(at, sizeof at, "%.6f", now);
  if (json_) {
    out_ << "{\"format\":\"fiberloop-task-dump\",\"version\":" << kSchemaVersion
         << ",\"time\":" << at << ",\"task_count\":" << tasks << ",\"tasks\":[";
    first_item_ = true;
  } else {
    out_ << "fiberloop: " << tasks << (tasks == 1 ? " task" : " tasks") << " at loop time " << at
         << '\n';
  }
}

void DumpWriter::end_dump() { out_ << (json_ ? "}\n" : "") << std::flush; }

void DumpWriter::begin_task(const TaskStateBase& task, const char* state) {
  if (json_) {
    comma();
    out_ << "{\"id\":" << task.number() << ",\"name\":";
    name_of(task);
    out_ << ",\"state\":\"" << state << '"';
  } else {
    out_ << "Task " << task.number() << ' ';
    name_of(task);
    out_ << ": " << state;
  }
}

void DumpWriter::wait(const Wait& w) {
  bool waiting = std::strcmp(w.state, "waiting") == 0;
  char since[32], waited[32], deadline[32] = "";
  std::snprintf(since, sizeof since, "%.6f", w.since);
  std::snprintf(waited, sizeof waited, "%.6f", w.waited);
  if (w.deadline) std::snprintf(deadline, sizeof deadline, "%.6f", *w.deadline);
  if (json_) {
    out_ << (waiting ? ",\"wait\":{\"kind\":\"" : ",\"last_wait\":{\"kind\":\"")
         << (waiting ? w.kind : "") << "\",\"call\":";
    string(w.call);
    out_ << ",\"file\":";
    string(w.where.file_name());
    out_ << ",\"line\":" << w.where.line() << ",\"function\":";
    string(w.where.function_name());
    out_ << ",\"since\":" << since;
    if (waiting) out_ << ",\"waited\":" << waited;
    if (waiting && w.deadline) out_ << ",\"deadline\":" << deadline;
    if (waiting && w.fd >= 0) {
      out_ << ",\"fd\":" << w.fd << ",\"direction\":\"" << w.direction << "\",\"peer\":";
      string(w.peer);
    }
    if (waiting && w.task) {
      out_ << ",\"task\":{\"id\":" << w.task->number() << ",\"name\":";
      name_of(*w.task);
      out_ << '}';
    }
    out_ << '}';
    return;
  }
  if (!waiting) {
    out_ << " (last waited in " << w.call << " at " << w.where.file_name() << ':'
         << w.where.line() << ')';
    return;
  }
  out_ << ' ' << waited << " s on ";
  if (w.deadline) {
    out_ << "sleep until " << deadline;
  } else if (w.fd >= 0) {
    out_ << "fd " << w.fd << ' ' << w.direction;
    if (w.peer && *w.peer) out_ << " (peer " << w.peer << ')';
  } else if (w.task) {
    out_ << "Task " << w.task->number() << ' ';
    name_of(*w.task);
  } else {
    out_ << w.kind;
  }
  out_ << ", in " << w.call << " at " << w.where.file_name() << ':' << w.where.line() << " ("
       << w.where.function_name() << ')';
}

void DumpWriter::parent(const TaskStateBase* parent) {
  if (json_) {
    out_ << ",\"parent\":";
    if (!parent) {
      out_ << "null";
      return;
    }
    out_ << "{\"id\":" << parent->number() << ",\"name\":";
    name_of(*parent);
    out_ << '}';
  } else if (parent) {
    out_ << "  parent: Task " << parent->number() << ' ';
    name_of(*parent);
    out_ << '\n';
  }
}

void DumpWriter::begin_list(const char* key) {
  items_ = 0;
  if (json_) {
    out_ << ",\"" << key << "\":[";
    first_item_ = true;
  } else {
    out_ << '\n';  // ends the task's first line
  }
}

void DumpWriter::task_ref(const TaskStateBase& task) {
  if (json_) {
    comma();
    out_ << "{\"id\":" << task.number() << ",\"name\":";
    name_of(task);
    out_ << '}';
    return;
  }
  out_ << (items_ == 0 ? (cycles_ ? "  cycle: " : "  awaited by: ") : (cycles_ ? " -> " : ", "))
       << "Task " << task.number() << ' ';
  name_of(task);
  ++items_;
}

void DumpWriter::end_list() {
  if (json_) {
    out_ << ']';
  } else if (items_) {
    out_ << '\n';
  }
}

void DumpWriter::begin_stack(bool started) {
  items_ = 0;
  if (json_) {
    out_ << ",\"stack\":[";
    first_item_ = true;
  } else if (!started) {
    out_ << "  stack: none, not started\n";
  }
}

void DumpWriter::frame(int index, void* address, const Symbol& symbol) {
  char addr[24];
  std::snprintf(addr, sizeof addr, "%p", address);
  if (json_) {
    comma();
    out_ << "{\"address\":\"" << addr << "\",\"function\":";
    if (symbol.function) {
      string(symbol.function);
    } else {
      out_ << "null";
    }
    out_ << ",\"offset\":" << symbol.offset << ",\"object\":";
    string(symbol.object);
    out_ << ",\"object_offset\":" << (symbol.object ? symbol.object_offset(address) : 0);
    out_ << '}';
    return;
  }
  out_ << "    #" << index << ' ' << addr << ' ' << (symbol.function ? symbol.function : "??");
  if (symbol.function) out_ << "+0x" << std::hex << symbol.offset << std::dec;
  if (symbol.object)
    out_ << " (+0x" << std::hex << symbol.object_offset(address) << std::dec << ' '
         << symbol.object << ')';
  out_ << '\n';
}

void DumpWriter::end_stack() {
  if (json_) out_ << ']';
}

void DumpWriter::end_task() {
  if (json_) out_ << '}';
  first_item_ = false;  // the next task needs its comma
}

void DumpWriter::end_tasks() {
  if (json_) out_ << ']';
}

void DumpWriter::begin_cycles() {
  if (json_) {
    out_ << ",\"cycles\":[";
    first_item_ = true;
  }
}

void DumpWriter::begin_cycle() {
  ++cycles_;
  items_ = 0;
  if (json_) {
    comma();
    out_ << '[';
    first_item_ = true;
  }
}

void DumpWriter::end_cycle() {
  if (json_) {
    out_ << ']';
    first_item_ = false;  // the next cycle needs its comma
  } else {
    out_ << '\n';
  }
}

void DumpWriter::end_cycles() {
  if (json_) {
    out_ << ']';
  } else {
    out_ << (cycles_ ? "" : "no cycles of tasks awaiting each other\n");
  }
}

}  // namespace fiberloop::detail
