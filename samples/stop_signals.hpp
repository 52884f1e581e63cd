// stop_signals.hpp: SIGINT / SIGTERM as something a task can wait for.
#pragma once

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <fiberloop/fiberloop.hpp>
#include <system_error>

// StopSignals blocks SIGINT and SIGTERM (construct it before any thread of
// your own starts; fiberloop's executor threads block them anyway) and
// delivers them through a signalfd, which the loop watches like a socket:
// wait() suspends the calling task until one arrives.
class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&mask_);
    sigaddset(&mask_, SIGINT);
    sigaddset(&mask_, SIGTERM);
    if (::sigprocmask(SIG_BLOCK, &mask_, nullptr) != 0)
      throw std::system_error(errno, std::generic_category(), "sigprocmask");
    fd_ = ::signalfd(-1, &mask_, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
  }
  ~StopSignals() { ::close(fd_); }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // wait() returns the number of the signal that arrived.
  int wait() {
    auto& loop = fiberloop::get_running_loop();
    struct Forget {  // remove before close: the loop lets go of the fd on any exit
      fiberloop::EventLoop& loop;
      int fd;
      ~Forget() { loop.forget_fd(fd); }
    } forget{loop, fd_};
    for (;;) {
      signalfd_siginfo info;
      if (::read(fd_, &info, sizeof info) == sizeof info) return static_cast<int>(info.ssi_signo);
      if (errno != EAGAIN && errno != EINTR)
        throw std::system_error(errno, std::generic_category(), "read(signalfd)");
      loop.wait_readable(fd_);
    }
  }

 private:
  sigset_t mask_;
  int fd_ = -1;
};
