// task_group_test.cpp: TaskGroup, after CPython's test_asyncio/test_taskgroups.py.
#include <boost/test/unit_test.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_fixture.hpp"
#include "test_helpers.hpp"

using fiberloop::CancelledError;
using fiberloop::ExceptionGroup;
using fiberloop::RuntimeError;
using fiberloop::TaskGroup;

namespace {

void run_briefly(int n = 1) {
  for (int i = 0; i < n; ++i) fiberloop::sleep(0);
}

std::vector<std::string> whats(const ExceptionGroup& g) {
  std::vector<std::string> v;
  for (auto& e : g.exceptions()) v.push_back(what_of(e));
  return v;
}

int cancelling() { return fiberloop::current_task()->cancelling(); }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(task_group, LoopFixture)

// test_taskgroup_01: the scope waits for every child.
BOOST_AUTO_TEST_CASE(waits_for_children) {
  run([&] {
    fiberloop::Task<int> t1, t2;
    int r = fiberloop::task_group([&](TaskGroup& g) {
      t1 = g.spawn([] {
        fiberloop::sleep(0.002);
        return 42;
      });
      t2 = g.spawn([] {
        fiberloop::sleep(0.001);
        return 11;
      });
      return 7;
    });
    BOOST_TEST(r == 7);
    BOOST_TEST(t1.result() == 42);
    BOOST_TEST(t2.result() == 11);
  });
}

// test_taskgroup_04 / _05: one child fails; the sibling and the body are
// cancelled, and ExceptionGroup carries the failure.
BOOST_AUTO_TEST_CASE(child_failure_cancels_siblings_and_body) {
  Log log;
  run([&] {
    try {
      fiberloop::task_group([&](TaskGroup& g) {
        g.spawn([&] {
          try {
            fiberloop::sleep(10);
          } catch (const CancelledError&) {
            log.push_back("sibling cancelled");
            throw;
          }
        });
        g.spawn([&] {
          fiberloop::sleep(0.001);
          log.push_back("child fails");
          throw std::runtime_error("division by zero");
        });
        try {
          fiberloop::sleep(10);
        } catch (const CancelledError&) {
          log.push_back("body cancelled");
          throw;
        }
      });
    } catch (const ExceptionGroup& eg) {
      log.push_back("ExceptionGroup: " + whats(eg).at(0));
      BOOST_TEST(eg.exceptions().size() == 1u);
    }
    // The group's own cancellation of the parent was taken back.
    BOOST_TEST(cancelling() == 0);
    fiberloop::sleep(0);  // and the task goes on normally
    log.push_back("parent goes on");
  });
  BOOST_TEST(log == (Log{"child fails", "sibling cancelled", "body cancelled",
                         "ExceptionGroup: division by zero", "parent goes on"}),
             boost::test_tools::per_element());
}

// test_taskgroup_07: the body fails; children are cancelled; its error is in
// the group, after the children's.
BOOST_AUTO_TEST_CASE(body_failure) {
  run([&] {
    fiberloop::Task<void> child;
    try {
      fiberloop::task_group([&](TaskGroup& g) {
        child = g.spawn([] { fiberloop::sleep(10); });
        fiberloop::sleep(0);
        throw std::logic_error("body");
      });
      BOOST_FAIL("no ExceptionGroup");
    } catch (const ExceptionGroup& eg) {
      BOOST_TEST(whats(eg) == (Log{"body"}), boost::test_tools::per_element());
    }
    BOOST_TEST(child.cancelled());
  });
}

// test_taskgroup_14: two children fail: both are in the group, in order.
BOOST_AUTO_TEST_CASE(every_failure_is_kept) {
  run([&] {
    try {
      fiberloop::task_group([&](TaskGroup& g) {
        g.spawn([] { throw std::runtime_error("one"); });
        g.spawn([] { throw std::runtime_error("two"); });
      });
    } catch (const ExceptionGroup& eg) {
      BOOST_TEST(whats(eg) == (Log{"one", "two"}), boost::test_tools::per_element());
      BOOST_TEST(std::string(eg.what()) == "unhandled errors in a TaskGroup (2 sub-exceptions)");
    }
  });
}

// A child fails while another is still being cancelled: that one's own
// failure during its cancellation is collected too.
BOOST_AUTO_TEST_CASE(child_fails_while_another_is_being_cancelled) {
  Log log;
  run([&] {
    try {
      fiberloop::task_group([&](TaskGroup& g) {
        g.spawn([&] {
          try {
            fiberloop::sleep(10);
          } catch (const CancelledError&) {
            log.push_back("slow: cancelled, cleaning up");
            fiberloop::sleep(0.001);
            log.push_back("slow: cleanup fails");
            throw std::runtime_error("cleanup failed");
          }
        });
        g.spawn([&] {
          fiberloop::sleep(0.001);
          log.push_back("fast: fails");
          throw std::runtime_error("fast failed");
        });
      });
    } catch (const ExceptionGroup& eg) {
      log.push_back("group: " + whats(eg).at(0) + ", " + whats(eg).at(1));
    }
  });
  BOOST_TEST(log == (Log{"fast: fails", "slow: cancelled, cleaning up", "slow: cleanup fails",
                         "group: fast failed, cleanup failed"}),
             boost::test_tools::per_element());
}

// test_taskgroup_08 / _09: the parent is cancelled from outside: the children
// are cancelled and CancelledError propagates; cancelling() stays 1.
BOOST_AUTO_TEST_CASE(parent_cancelled_from_outside) {
  Log log;
  run([&] {
    auto runner = fiberloop::spawn([&] {
      try {
        fiberloop::task_group([&](TaskGroup& g) {
          g.spawn([&] {
            try {
              fiberloop::sleep(10);
            } catch (const CancelledError&) {
              log.push_back("child cancelled");
              throw;
            }
          });
          fiberloop::sleep(10);
        });
      } catch (const CancelledError&) {
        log.push_back("runner: CancelledError, cancelling=" + std::to_string(cancelling()));
        throw;
      }
    });
    run_briefly(2);
    runner.cancel();
    BOOST_CHECK_THROW(fiberloop::await(runner), CancelledError);
    BOOST_TEST(runner.cancelled());
  });
  BOOST_TEST(log == (Log{"child cancelled", "runner: CancelledError, cancelling=1"}),
             boost::test_tools::per_element());
}

// Cancelled from outside while the scope already waits for its children
// (the body returned): the children are cancelled, CancelledError propagates.
BOOST_AUTO_TEST_CASE(parent_cancelled_while_exiting) {
  run([&] {
    fiberloop::Task<void> child;
    auto runner = fiberloop::spawn([&] {
      fiberloop::task_group([&](TaskGroup& g) { child = g.spawn([] { fiberloop::sleep(10); }); });
    });
    run_briefly(2);
    runner.cancel();
    BOOST_CHECK_THROW(fiberloop::await(runner), CancelledError);
    BOOST_TEST(child.cancelled());
  });
}

// test_taskgroup_15: cancelled from outside, and meanwhile a child fails:
// ExceptionGroup wins, and the outside cancellation stays pending.
BOOST_AUTO_TEST_CASE(outside_cancel_then_child_failure) {
  Log log;
  run([&] {
    auto runner = fiberloop::spawn([&] {
      try {
        fiberloop::task_group([&](TaskGroup& g) {
          g.spawn([] {
            fiberloop::sleep(0.05);
            throw std::runtime_error("crash");
          });
          try {
            fiberloop::sleep(10);
          } catch (const CancelledError&) {
            log.push_back("body cancelled from outside");
            fiberloop::sleep(0.2);  // the child crashes meanwhile
            throw;
          }
        });
      } catch (const ExceptionGroup& eg) {
        log.push_back("ExceptionGroup: " + whats(eg).at(0) +
                      ", cancelling=" + std::to_string(cancelling()));
        throw;
      }
    });
    fiberloop::sleep(0.005);
    runner.cancel();
    try {
      fiberloop::await(runner);
    } catch (const ExceptionGroup&) {
      log.push_back("runner ended with ExceptionGroup");
    }
  });
  BOOST_TEST(log == (Log{"body cancelled from outside", "ExceptionGroup: crash, cancelling=1",
                         "runner ended with ExceptionGroup"}),
             boost::test_tools::per_element());
}

// The body swallows the group's cancellation and returns normally:
// ExceptionGroup anyway, and the parent is not left cancelled.
BOOST_AUTO_TEST_CASE(body_swallows_the_cancellation) {
  run([&] {
    BOOST_CHECK_THROW(fiberloop::task_group([&](TaskGroup& g) {
                        g.spawn([] { throw std::runtime_error("x"); });
                        try {
                          fiberloop::sleep(10);
                        } catch (const CancelledError&) {
                        }
                      }),
                      ExceptionGroup);
    BOOST_TEST(cancelling() == 0);
  });
}

// test_taskgroup_11 / _12: nested groups; the inner failure reaches the outer
// group wrapped.
BOOST_AUTO_TEST_CASE(nested_groups) {
  run([&] {
    try {
      fiberloop::task_group([&](TaskGroup& outer) {
        outer.spawn([] {
          fiberloop::task_group([](TaskGroup& inner) {
            inner.spawn([] {
              fiberloop::sleep(0.001);
              throw std::runtime_error("deep");
            });
          });
        });
        fiberloop::sleep(10);
      });
    } catch (const ExceptionGroup& eg) {
      BOOST_TEST(eg.exceptions().size() == 1u);
      try {
        std::rethrow_exception(eg.exceptions()[0]);
      } catch (const ExceptionGroup& inner) {
        BOOST_TEST(whats(inner) == (Log{"deep"}), boost::test_tools::per_element());
      }
    }
    BOOST_TEST(cancelling() == 0);
  });
}

// test_taskgroup_no_create_task_after_failure / finished group.
BOOST_AUTO_TEST_CASE(spawn_after_failure_or_end_throws) {
  run([&] {
    TaskGroup* kept = nullptr;
    try {
      fiberloop::task_group([&](TaskGroup& g) {
        kept = &g;
        g.spawn([] { throw std::runtime_error("first"); });
        try {
          fiberloop::sleep(10);
        } catch (const CancelledError&) {
          BOOST_CHECK_THROW(g.spawn([] {}), RuntimeError);  // shutting down
          throw;
        }
      });
    } catch (const ExceptionGroup&) {
    }
    BOOST_TEST(kept != nullptr);
  });
  BOOST_CHECK_THROW(fiberloop::task_group([](TaskGroup&) {}), RuntimeError);  // no task
}

// test_taskgroup_task_name
BOOST_AUTO_TEST_CASE(named_children) {
  run([&] {
    fiberloop::task_group([&](TaskGroup& g) {
      auto t = g.spawn(fiberloop::TaskOptions{"child-1"}, [] {});
      BOOST_TEST(t.get_name() == "child-1");
    });
  });
}

// Cancelled children (not failures) do not make an ExceptionGroup.
BOOST_AUTO_TEST_CASE(cancelled_child_is_not_an_error) {
  run([&] {
    fiberloop::task_group([&](TaskGroup& g) {
      auto t = g.spawn([] { fiberloop::sleep(10); });
      fiberloop::sleep(0);
      t.cancel();
    });
    BOOST_TEST(cancelling() == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
