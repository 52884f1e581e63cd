#include "fiberloop/gather.hpp"

#include <algorithm>

#include "fiberloop/wait.hpp"

namespace fiberloop::detail {

void GatheringState::add(FutureStateBase* child) {
  children_.emplace_back(child);
  if (child->done()) {
    done_at_start_.push_back(child);
  } else {
    child->add_done_callback([self = Ref(this)](FutureStateBase& f) { self->child_done(f); });
  }
}

void GatheringState::start() {
  // Like asyncio, once every child is known: a child done already may
  // complete the gathering at once.
  for (FutureStateBase* child : done_at_start_) child_done(*child);
  done_at_start_.clear();
}

bool GatheringState::cancel(std::string message) {
  if (done()) return false;
  bool any = false;
  for (auto& child : children_) {
    if (child->cancel(message)) any = true;
  }
  // Only when a child was really cancelled: otherwise the gathering ends as
  // it would have, and the waiting task sees its own cancellation instead.
  if (any) cancel_requested_ = true;
  return any;
}

void GatheringState::child_done(FutureStateBase& child) {
  ++finished_;
  if (done()) {
    if (!child.cancelled()) child.exception();  // retrieved: no "never retrieved" report
    return;
  }
  if (!return_exceptions_) {
    if (child.cancelled()) {
      set_exception(child.waiter_exception());
      return;
    }
    if (std::exception_ptr e = child.exception()) {
      set_exception(e);
      return;
    }
  }
  if (finished_ < children_.size()) return;
  if (return_exceptions_) {
    // The results are collected: all retrieved. (Without return_exceptions
    // every child has a value here: a failure ended the gathering already.)
    for (auto& c : children_) {
      if (!c->cancelled()) c->exception();
    }
  }
  if (cancel_requested_) {
    // A cancelled gather ends cancelled, whatever return_exceptions says.
    set_exception(child.cancelled() ? child.waiter_exception()
                                    : std::make_exception_ptr(CancelledError()));
  } else {
    finish();
  }
}

void await_gathering(EventLoop& loop, bool return_exceptions,
                     const std::vector<FutureStateBase*>& children) {
  Ref<GatheringState> outer(new GatheringState(loop, return_exceptions));
  // A repeated child counts once, as in asyncio's set of futures: the
  // repeats are found in expected O(n), not by a scan per child.
  std::vector<std::size_t> repeats = repeated_positions(children);
  outer->reserve(children.size() - repeats.size());
  std::size_t r = 0;
  for (std::size_t i = 0; i < children.size(); ++i) {
    if (r < repeats.size() && repeats[r] == i) {
      ++r;
      continue;
    }
    outer->add(children[i]);
  }
  outer->start();
  await_as(Future<void>(Ref<FutureStateBase>(outer)), "gather()", std::source_location::current());
}

}  // namespace fiberloop::detail
