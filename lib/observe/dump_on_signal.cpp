// A signal that dumps the tasks: Go's SIGQUIT, without ending the program.
#include <signal.h>
#include <string.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

#include "fiberloop/signals.hpp"
#include "fiberloop/task_dump.hpp"

namespace fiberloop {
namespace {

// write_all(fd, text): the dump in as few writes as the fd takes.
bool write_all(std::FILE* f, const std::string& text) {
  return std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0;
}

// signal_named(text) is the signal "SIGQUIT", "QUIT" or "3" names, or 0.
int signal_named(const std::string& text) {
  if (text.empty()) return 0;
  char* end = nullptr;
  long number = std::strtol(text.c_str(), &end, 10);
  if (*end == '\0') return number > 0 && number < NSIG ? static_cast<int>(number) : 0;
  std::string name = text.rfind("SIG", 0) == 0 ? text.substr(3) : text;
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev && name == abbrev) return sig;
  }
  return 0;
}

}  // namespace

void EventLoop::enable_dump_on_signal(int sig, std::string path, DumpFormat format) {
  add_signal_handler(sig, [this, path = std::move(path), format] {
    // Built whole, then written at once: a dump of many tasks reaches the
    // file or terminal in a few writes, not one per field.
    std::ostringstream text;
    dump_tasks(text, format);
    std::FILE* f = path.empty() ? stderr : std::fopen(path.c_str(), "a");
    bool written = f && write_all(f, text.str());
    int error = errno;
    if (f && f != stderr) std::fclose(f);
    if (!written) {
      call_exception_handler(
          {"task dump on signal: cannot write " + (path.empty() ? std::string("stderr") : path) +
               ": " + std::strerror(error),
           nullptr,
           {}});
    }
  });
}

namespace detail {

void enable_dump_from_environment(EventLoop& loop) {
  const char* value = std::getenv("FIBERLOOP_DUMP_SIGNAL");
  if (!value || !*value) return;
  int sig = signal_named(value);
  if (!sig) {
    throw std::invalid_argument(std::string("FIBERLOOP_DUMP_SIGNAL=") + value +
                                ": not a signal name (SIGQUIT, QUIT) or number");
  }
  const char* file = std::getenv("FIBERLOOP_DUMP_FILE");
  loop.enable_dump_on_signal(sig, file ? file : "");
}

}  // namespace detail
}  // namespace fiberloop
