// run_commands [-j N] [-k] [COMMAND...]: runs shell commands concurrently, at
// most N at a time (default 2), prints every line each one writes (stdout and
// stderr) as "[cmd I] line", then each one's exit status.
//
// Lines go out as soon as they are read, so the output of commands running
// at once interleaves as it happens. -k keeps the order: a command's lines
// are held back until those before it have finished, and the output reads as
// if the commands ran one after another (GNU parallel's -k); they still run
// concurrently. Without COMMANDs: a built-in list, with -k, so that the
// output is the same on every run.
//
// Exit status: 0 once every command ran, whatever their statuses; 2 for a
// usage error; 130 after Ctrl-C.
#include <algorithm>
#include <cstring>
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

namespace {

const std::vector<std::string> kDemo = {
    "echo counting; for i in 1 2 3; do sleep 0.1; echo $i; done",
    "echo to stdout; echo to stderr >&2",
    "echo about to fail; exit 3",
    "sleep 0.2; echo slept",
    "echo stopping myself; kill -TERM $$",
};

// Output prints the commands' lines. With keep_order it prints only the
// first unfinished command's lines at once and holds the others' back.
class Output {
 public:
  Output(std::size_t n, bool keep_order) : held_(n), done_(n), keep_order_(keep_order) {}

  void line(std::size_t i, const std::string& text) {
    std::string out = "[cmd " + std::to_string(i + 1) + "] " + text;
    if (!out.ends_with('\n')) out += '\n';  // a last line without one
    if (!keep_order_ || i == head_) {
      std::cout << out << std::flush;  // a line at a time, even into a pipe
    } else {
      held_[i].push_back(std::move(out));
    }
  }
  // finished(i): command i wrote its last line; the next ones may come out.
  void finished(std::size_t i) {
    done_[i] = true;
    while (keep_order_ && head_ < done_.size() && done_[head_]) {
      if (++head_ == held_.size()) break;
      for (const std::string& out : held_[head_]) std::cout << out;
      std::cout << std::flush;
      held_[head_].clear();
    }
  }

 private:
  std::vector<std::vector<std::string>> held_;
  std::vector<bool> done_;
  std::size_t head_ = 0;  // the first command not finished
  bool keep_order_;
};

struct Run {
  fiberloop::Semaphore slots;  // -j: how many commands may run at once
  Output output;
  int running = 0, peak = 0;
};

// run_one runs command i and returns its exit status: a plain function,
// blocking-style, whose waits (a slot, a line, the exit) suspend its task only.
int run_one(Run& run, std::size_t i, const std::string& command) {
  std::lock_guard slot(run.slots);  // acquire() now, release() however this ends
  run.peak = std::max(run.peak, ++run.running);
  // stdout piped to us, stderr into the same pipe (so their lines keep their
  // order), stdin /dev/null: commands running at once must not fight over
  // the terminal's input.
  fiberloop::SubprocessOptions options;
  options.in = fiberloop::Stdio::devnull();
  options.out = fiberloop::Stdio::pipe();
  options.err = fiberloop::Stdio::to_stdout();
  auto child = fiberloop::create_subprocess_shell(command, options);
  try {
    run.output.line(i, "$ " + command);
    auto& out = child.stdout_reader();
    for (std::string line; !(line = out.readline()).empty();) run.output.line(i, line);
    run.output.finished(i);
    int status = child.wait();
    --run.running;
    return status;
  } catch (const fiberloop::CancelledError&) {
    // Cancelling a task leaves its child running: kill it. (The shell only:
    // what it started shares our process group, which a Ctrl-C at the
    // terminal reaches anyway.)
    child.kill();
    throw;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int jobs = 2;
  bool keep_order = false;
  std::vector<std::string> commands;
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "-j") == 0 && a + 1 < argc && std::atoi(argv[a + 1]) > 0) {
      jobs = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "-k") == 0) {
      keep_order = true;
    } else if (argv[a][0] == '-') {
      std::cerr << "usage: run_commands [-j N] [-k] [COMMAND...]\n";
      return 2;
    } else {
      commands.push_back(argv[a]);
    }
  }
  if (commands.empty()) {
    commands = kDemo;
    keep_order = true;
  }

  Run run{fiberloop::Semaphore(jobs), Output(commands.size(), keep_order)};
  std::vector<int> status(commands.size());
  try {
    fiberloop::run([&] {
      // One task per command, all started at once; the semaphore makes all
      // but `jobs` of them wait. The group returns once every one has ended.
      fiberloop::task_group([&](fiberloop::TaskGroup& group) {
        for (std::size_t i = 0; i < commands.size(); ++i)
          group.spawn([&, i] { status[i] = run_one(run, i, commands[i]); });
      });
    });
  } catch (const fiberloop::KeyboardInterrupt&) {
    // Ctrl-C: run() cancelled the group, whose tasks killed their children.
    return fiberloop::KeyboardInterrupt::kExitStatus;
  }

  int failed = 0;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    std::cout << "[cmd " << i + 1 << "] ";
    if (status[i] < 0) {
      std::cout << "killed by signal " << -status[i] << "\n";  // returncode -N: signal N
    } else {
      std::cout << "exit status " << status[i] << "\n";
    }
    failed += status[i] != 0;
  }
  std::cout << commands.size() << " commands, at most " << run.peak << " at a time, " << failed
            << " failed\n";
}
