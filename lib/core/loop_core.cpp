#include "fiberloop/detail/loop_core.hpp"

#include <cstdio>

#include "fiberloop/errors.hpp"

namespace fiberloop::detail {
namespace {

std::string describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (const CancelledError& ex) {
    return std::string("CancelledError: ") + ex.message();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

LoopCore::LoopCore(EventLoop& owner) : owner_(&owner), link_(new LoopLink) { link_->core = this; }

LoopCore::~LoopCore() {
  FIBERLOOP_ASSERT(!live_, "a loop destroyed with live tasks: close() unwinds them first");
  drop_ready();
  link_->core = nullptr;
}

void LoopCore::throw_closed() { throw RuntimeError("Event loop is closed"); }

void LoopCore::set_running(bool on) noexcept {
  running_ = on;
  if (on) thread_id_ = std::this_thread::get_id();
}

void LoopCore::mark_closed() noexcept {
  closed_ = true;
  checked_requeue_ = true;
  inbox_->close();
}

void LoopCore::check_thread_slow() const {
  if (running_ && std::this_thread::get_id() != thread_id_) {
    throw RuntimeError(
        "Non-thread-safe operation invoked on an event loop other than the current one");
  }
}

void LoopCore::requeue_checks() {
  check_closed();
  check_thread();
  if (inbox_->pending()) take_posts();  // posted earlier: they run first
}

void LoopCore::requeue_slow(HandleState* h) {
  requeue_checks();
  push_ready(h);
}

void LoopCore::requeue_step_slow(HandleState* h) {
  requeue_checks();
  ready_.push_back(h);
}

void LoopCore::drop_ready() noexcept {
  while (!ready_.empty()) {
    HandleState* h = ready_.pop_front();
    if (!h->is_task_step()) Ref<HandleState>::adopt(h);  // may queue more: loop
  }
}

void LoopCore::take_posts() {
  inbox_->take(posts_batch_);
  struct Clear {
    std::vector<Callback>& batch;
    ~Clear() { batch.clear(); }
  } clear{posts_batch_};
  for (Callback& cb : posts_batch_) {
    Ref<HandleState> h(new HandleState(this, std::move(cb)));
    push_ready(h.get());
  }
}

void LoopCore::call_exception_handler(const ExceptionContext& context) noexcept {
  if (!exception_handler_) {
    default_exception_handler(context);
    return;
  }
  try {
    exception_handler_(*owner_, context);
  } catch (...) {
    default_exception_handler(
        {"Unhandled error in exception handler", std::current_exception(), {}});
    default_exception_handler(context);
  }
}

void LoopCore::default_exception_handler(const ExceptionContext& context) noexcept {
  std::string text = context.message;
  if (!context.task.empty()) text += "\ntask: " + context.task;
  if (context.exception) text += "\nexception: " + describe_exception(context.exception);
  text += '\n';
  std::fputs(text.c_str(), stderr);
}

void LoopCore::report(LoopCore* core, const ExceptionContext& context) noexcept {
  if (core) {
    core->call_exception_handler(context);
  } else {
    default_exception_handler(context);
  }
}

}  // namespace fiberloop::detail
