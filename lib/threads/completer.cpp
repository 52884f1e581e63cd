#include "fiberloop/completer.hpp"

#include "fiberloop/executor.hpp"

namespace fiberloop::detail {

ThreadBridge::ThreadBridge(EventLoop& loop) noexcept : inbox_(loop.core().inbox()) {}
ThreadBridge::~ThreadBridge() = default;

std::shared_ptr<ThreadBridge> ThreadBridge::of(EventLoop& loop) {
  loop.core().check_closed();
  loop.core().check_thread();
  auto& slot = loop.extension(ExtensionSlot::bridge);
  if (!slot) slot = std::make_shared<ThreadBridge>(loop);
  return std::static_pointer_cast<ThreadBridge>(slot);
}

bool ThreadBridge::post(Callback fn) {
  // One lock, the inbox's: its closed flag and its eventfd are guarded by
  // it, so a post either lands before the loop closed the inbox or is
  // refused (fn is then destroyed here).
  try {
    inbox_->post(std::move(fn));
  } catch (const RuntimeError&) {
    return false;
  }
  return true;
}

void ThreadBridge::close() noexcept {
  // Posts made while the executor shuts down below still land in the inbox;
  // the loop drops them unrun when it closes the inbox right after this.
  // Joined on the loop thread: the executor must not die with the last
  // completer, which may be on one of its own workers.
  if (executor_) {
    executor_->shutdown();
    executor_.reset();
  }
  while (blocks_) {
    CompleterBlock* b = blocks_;
    unlink(b);
    b->detach_future();
    b->release();
  }
}

ThreadPoolExecutor& ThreadBridge::default_executor() {
  if (!executor_) executor_ = std::make_unique<ThreadPoolExecutor>();
  return *executor_;
}

void ThreadBridge::link(CompleterBlock* b) noexcept {
  b->next_ = blocks_;
  if (blocks_) blocks_->prev_ = b;
  blocks_ = b;
}

void ThreadBridge::unlink(CompleterBlock* b) noexcept {
  if (b->prev_) {
    b->prev_->next_ = b->next_;
  } else {
    blocks_ = b->next_;
  }
  if (b->next_) b->next_->prev_ = b->prev_;
  b->prev_ = b->next_ = nullptr;
}

// Delivery carries one reference to a block through the loop's queue; if the
// loop drops it unrun (closed), the reference goes with it.
struct CompleterBlock::Delivery {
  CompleterBlock* block;
  explicit Delivery(CompleterBlock* b) noexcept : block(b) {}
  Delivery(Delivery&& o) noexcept : block(std::exchange(o.block, nullptr)) {}
  Delivery& operator=(Delivery&&) = delete;
  ~Delivery() {
    if (block) block->release();
  }
  void operator()() { block->deliver(); }
};

CompleterBlock::CompleterBlock(FutureStateBase& fut) {
  // The thread check (debug mode) comes before anything reads the future.
  bridge_ = ThreadBridge::of(fut.loop());
  if (fut.done()) throw InvalidStateError("Completer(): " + fut.describe() + " is already done");
  future_ = &fut;
  fut.add_ref();
  bridge_->link(this);
}

CompleterBlock::~CompleterBlock() = default;

bool CompleterBlock::post(Outcome outcome) {
  outcome_ = outcome;
  // The Delivery gets a reference of its own, so that this one keeps the
  // block alive for drop_value() should the post be refused.
  refs_.fetch_add(1, std::memory_order_relaxed);
  bool posted;
  try {
    posted = bridge_->post(Delivery(this));
  } catch (...) {
    drop_value();
    release();
    throw;
  }
  if (!posted) drop_value();  // the value dies on this thread, the loop never sees it
  release();
  return posted;
}

void CompleterBlock::deliver() {
  FutureStateBase* f = std::exchange(future_, nullptr);
  if (!f) return;
  bridge_->unlink(this);
  // Runs last: the future's reference, the value, the exception, the
  // registry's reference. The value and the exception die here, on the loop
  // thread that used them, never with a block freed on the completing
  // thread: an exception's last reference dropped there would destroy it
  // with nothing TSan can see ordering the loop's reads before it (the
  // exception's count lives in the uninstrumented libstdc++).
  struct Done {
    CompleterBlock* self;
    Ref<FutureStateBase> fut;
    ~Done() {
      fut.reset();
      self->drop_value();
      self->exception_ = nullptr;
      self->release();
    }
  } done{this, Ref<FutureStateBase>::adopt(f)};
  if (f->cancelled()) return;  // the loop side gave up waiting: drop the outcome
  switch (outcome_) {
    case Outcome::value:
      deliver_value(*f);
      break;
    case Outcome::exception:
      f->set_exception(exception_);
      break;
    case Outcome::cancelled:
      f->cancel({});
      break;
    case Outcome::abandoned:
      if (!f->done())
        f->set_exception(std::make_exception_ptr(
            RuntimeError("Completer destroyed without completing the future")));
      break;
  }
}

void CompleterBlock::detach_future() noexcept {
  if (FutureStateBase* f = std::exchange(future_, nullptr)) Ref<FutureStateBase>::adopt(f);
}

}  // namespace fiberloop::detail
