#include <signal.h>

#include <cerrno>
#include <exception>
#include <string>
#include <system_error>
#include <utility>

#include "fiberloop/detail/child_state.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/subprocess.hpp"
#include "fiberloop/task_group.hpp"

namespace fiberloop {

Process::Process(std::shared_ptr<detail::ChildState> state) noexcept : state_(std::move(state)) {}

detail::ChildState& Process::state() const {
  if (!state_) throw RuntimeError("Process: this handle refers to no child");
  return *state_;
}

pid_t Process::pid() const noexcept { return state_ ? state_->pid : -1; }

std::optional<int> Process::returncode() const noexcept {
  return state_ ? state_->returncode : std::nullopt;
}

namespace {
template <class Stream>
Stream& piped(std::optional<Stream>& stream, const char* name) {
  if (!stream) {
    throw RuntimeError(std::string("Process: ") + name +
                       " is not a pipe (start the child with Stdio::pipe() for it)");
  }
  return *stream;
}
}  // namespace

net::StreamWriter& Process::stdin_writer() { return piped(state().in, "stdin"); }
net::StreamReader& Process::stdout_reader() { return piped(state().out, "stdout"); }
net::StreamReader& Process::stderr_reader() { return piped(state().err, "stderr"); }

int Process::wait() {
  detail::ChildState& child = state();
  while (!child.returncode) child.exited.wait();
  return *child.returncode;
}

std::pair<std::string, std::string> Process::communicate(std::string input) {
  detail::ChildState& child = state();
  if (!input.empty() && !child.in) {
    throw RuntimeError("Process::communicate(): input given, but stdin is not a pipe");
  }
  std::string out, err;
  try {
    task_group([&](TaskGroup& group) {
      // Named as the library's other tasks are, for all_tasks() and the dump.
      std::string pid = std::to_string(child.pid);
      if (child.in) {
        group.spawn({.name = "fiberloop.subprocess stdin " + pid},
                    [writer = *child.in, data = std::move(input)]() mutable {
          // A child that exits without reading all its input is not an
          // error of communicate's, as asyncio ignores BrokenPipeError here.
          // No input writes nothing: stdin may be closed already, by a
          // communicate() that timed out before this one (Python's idiom:
          // kill, then communicate() again to reap).
          try {
            if (!data.empty()) {
              writer.write(data);
              writer.drain();
            }
          } catch (const std::system_error& e) {
            if (e.code().value() != EPIPE && e.code().value() != ECONNRESET) throw;
          }
          writer.close();
        });
      }
      if (child.err) {
        group.spawn({.name = "fiberloop.subprocess stderr " + pid},
                    [&err, reader = *child.err]() mutable { err = reader.read(); });
      }
      if (child.out) out = child.out->read();
    });
  } catch (const ExceptionGroup& group) {
    std::rethrow_exception(group.exceptions().front());  // one stream's error, as asyncio's
  }
  wait();
  return {std::move(out), std::move(err)};
}

void Process::send_signal(int sig) {
  detail::ChildState& child = state();
  // Reaped, the pid may be another process's already; until then it is
  // ours (a zombie at worst), since only this thread reaps it.
  if (child.returncode) return;
  if (::kill(child.pid, sig) != 0) {
    throw std::system_error(errno, std::generic_category(),
                            "Process::send_signal(" + std::to_string(sig) + ")");
  }
}

void Process::terminate() { send_signal(SIGTERM); }
void Process::kill() { send_signal(SIGKILL); }

}  // namespace fiberloop
