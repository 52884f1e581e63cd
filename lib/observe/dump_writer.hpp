// dump_writer.hpp (private): the task dump's two formats behind one set of
// calls, so that the walk over the tasks is written once.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <source_location>

#include "fiberloop/detail/task_state.hpp"
#include "fiberloop/event_loop.hpp"
#include "../base/symbols.hpp"

namespace fiberloop::detail {

// DumpWriter writes the dump as text lines or as the JSON document of
// docs/observability.md. The calls come in the document's order; a list's
// items between its begin_ and end_.
class DumpWriter {
 public:
  DumpWriter(std::ostream& out, DumpFormat format) : out_(out), json_(format == DumpFormat::json) {}

  // Wait is what write_wait() gives of one wait; the pointers are optional.
  struct Wait {
    const char* state;
    const char* kind;
    const char* call;
    std::source_location where;
    double since;
    double waited;
    const double* deadline = nullptr;
    int fd = -1;
    const char* direction = nullptr;
    const char* peer = nullptr;
    const TaskStateBase* task = nullptr;
  };

  void begin_dump(std::size_t tasks, double now);
  void end_dump();
  void begin_task(const TaskStateBase& task, const char* state);
  void wait(const Wait& wait);
  void parent(const TaskStateBase* parent);
  void end_task();
  void end_tasks();
  void begin_list(const char* key);
  void task_ref(const TaskStateBase& task);
  void end_list();
  void begin_stack(bool started);
  void frame(int index, void* address, const Symbol& symbol);
  void end_stack();
  void begin_cycles();
  void begin_cycle();
  void end_cycle();
  void end_cycles();

 private:
  void name_of(const TaskStateBase& task);  // the name, quoted for JSON
  void string(const char* s);                // a JSON string, escaped
  void comma();                              // between a list's items

  std::ostream& out_;
  bool json_;
  bool first_item_ = true;  // no comma before the next item
  std::size_t items_ = 0;   // text: the items of the current list so far
  std::size_t cycles_ = 0;
};

}  // namespace fiberloop::detail
