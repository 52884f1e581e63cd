// twins.cpp: the C++ twins of the Python scenarios next to this file. Each
// scenario prints the order of events; compare.sh runs both and diffs them,
// checking our order against CPython's asyncio on this machine.
#include <signal.h>
#include <unistd.h>

#include <fiberloop/fiberloop.hpp>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fl = fiberloop;

namespace {

const char* py(bool b) { return b ? "True" : "False"; }

std::string message_of(const fl::CancelledError& e) { return e.message(); }

void lock_cancel_race() {
  std::cout << "-- cancel_race\n";
  {
    fl::Lock lock;
    auto lockit = [&](std::string name, std::optional<fl::Future<void>> blocker) {
      lock.acquire();
      std::cout << name << " acquired\n";
      struct Release {
        fl::Lock& lock;
        std::string name;
        ~Release() {
          lock.release();
          std::cout << name << " released\n";
        }
      } release{lock, name};
      if (blocker) fl::await(*blocker);
    };
    auto fa = fl::get_running_loop().create_future<void>();
    auto ta = fl::spawn(lockit, "A", fa);
    fl::sleep(0);
    auto tb = fl::spawn(lockit, "B", std::nullopt);
    fl::sleep(0);
    auto tc = fl::spawn(lockit, "C", std::nullopt);
    fl::sleep(0);
    fa.set_result();
    tb.cancel();
    fl::sleep(0);
    std::cout << "locked=" << py(lock.locked()) << " a_done=" << py(ta.done())
              << " b_cancelled=" << py(tb.cancelled()) << "\n";
    fl::await(tc);
  }
  std::cout << "-- cancel_release_race\n";
  fl::Lock lock;
  auto lockit = [&](std::string name) {
    try {
      lock.acquire();
    } catch (const fl::CancelledError&) {
      std::cout << name << " cancelled\n";
      throw;
    }
    std::cout << name << " acquired\n";
  };
  lock.acquire();
  auto t1 = fl::spawn(lockit, "t1");
  auto t2 = fl::spawn(lockit, "t2");
  auto t3 = fl::spawn(lockit, "t3");
  fl::sleep(0);
  fl::get_running_loop().call_soon([&] {
    t1.cancel();
    lock.release();
  });
  try {
    fl::await(t1);
  } catch (const fl::CancelledError&) {
    std::cout << "t1 awaited: CancelledError\n";
  }
  std::cout << "t2 done=" << py(t2.done()) << " t3 done=" << py(t3.done()) << "\n";
  t3.cancel();
  fl::sleep(0);
  std::cout << "t3 cancelled=" << py(t3.cancelled()) << "\n";
}

void semaphore_cancel() {
  fl::Semaphore sem(0);
  auto acq = [&](std::string name) {
    try {
      sem.acquire();
    } catch (const fl::CancelledError&) {
      std::cout << name << " cancelled\n";
      throw;
    }
    std::cout << name << " acquired\n";
  };
  std::vector<fl::Task<void>> ts;
  for (int i = 1; i <= 4; ++i) ts.push_back(fl::spawn(acq, "t" + std::to_string(i)));
  fl::sleep(0);
  ts[0].cancel();
  ts[1].cancel();
  sem.release();
  fl::sleep(0);
  fl::sleep(0);
  std::cout << "done:";
  for (auto& t : ts) std::cout << " " << t.done();
  std::cout << " locked: " << sem.locked() << "\n";
  ts[3].cancel();
  fl::sleep(0);
  std::cout << "t4 cancelled: " << ts[3].cancelled() << "\n";

  auto a = fl::spawn(acq, "a");
  auto b = fl::spawn(acq, "b");
  fl::sleep(0);
  sem.release();
  a.cancel();
  fl::gather(a, b, fl::return_exceptions);
  std::cout << "value: " << sem.value() << "\n";
}

void queue_cancel() {
  {
    fl::Queue<std::string> q;
    auto getter = [&](std::string name) {
      std::string item;
      try {
        item = q.get();
      } catch (const fl::CancelledError&) {
        std::cout << name << " cancelled\n";
        throw;
      }
      std::cout << name << " got " << item << "\n";
    };
    std::cout << "-- get race\n";
    auto t1 = fl::spawn(getter, "g1");
    auto t2 = fl::spawn(getter, "g2");
    fl::sleep(0);
    t1.cancel();
    fl::sleep(0);
    q.put("a");
    fl::gather(t1, t2, fl::return_exceptions);

    std::cout << "-- woken getter cancelled\n";
    t1 = fl::spawn(getter, "g1");
    t2 = fl::spawn(getter, "g2");
    fl::sleep(0);
    q.put_nowait("b");
    t1.cancel();
    fl::gather(t1, t2, fl::return_exceptions);
  }
  std::cout << "-- put race\n";
  fl::Queue<std::string> q(1);
  auto putter = [&](std::string item) {
    try {
      q.put(item);
    } catch (const fl::CancelledError&) {
      std::cout << "put " << item << " cancelled\n";
      throw;
    }
    std::cout << "put " << item << "\n";
  };
  auto pa = fl::spawn(putter, "a");
  auto pb = fl::spawn(putter, "b");
  auto pc = fl::spawn(putter, "X");
  fl::sleep(0);
  pc.cancel();
  fl::sleep(0);
  std::cout << "get " << q.get_nowait() << "\n";
  fl::sleep(0);
  std::cout << "get " << q.get_nowait() << "\n";
  fl::gather(pa, pb, pc, fl::return_exceptions);

  std::cout << "-- woken putter cancelled\n";
  q.put_nowait("0");
  auto p1 = fl::spawn(putter, "1");
  auto p2 = fl::spawn(putter, "2");
  fl::sleep(0);
  std::cout << "get " << q.get_nowait() << "\n";
  p1.cancel();
  fl::gather(p1, p2, fl::return_exceptions);
  std::cout << "get " << q.get_nowait() << "\n";
}

void gather_cancel() {
  auto child = [](std::string name) {
    try {
      fl::sleep(10);
    } catch (const fl::CancelledError& e) {
      std::cout << name << " cancelled: " << message_of(e) << "\n";
      fl::sleep(0);
      std::cout << name << " ends\n";
      throw;
    }
  };
  std::cout << "-- cancel the waiter\n";
  auto c1 = fl::spawn(child, "c1");
  auto c2 = fl::spawn(child, "c2");
  auto w = fl::spawn([&] {
    try {
      fl::gather(c1, c2, fl::return_exceptions);
    } catch (const fl::CancelledError& e) {
      std::cout << "gather: CancelledError " << message_of(e) << "\n";
      throw;
    }
  });
  fl::sleep(0);
  w.cancel("stop");
  try {
    fl::await(w);
  } catch (const fl::CancelledError&) {
    std::cout << "waiter cancelled\n";
  }

  std::cout << "-- child finishing\n";
  auto fut = fl::get_running_loop().create_future<int>();
  auto w2 = fl::spawn([&] {
    try {
      auto [r] = fl::gather(fut);
      std::cout << "value " << r << "\n";
    } catch (const fl::CancelledError&) {
      std::cout << "CancelledError\n";
      throw;
    }
  });
  fl::sleep(0);
  fut.set_result(3);
  std::cout << "cancel returns " << py(w2.cancel()) << "\n";
  try {
    fl::await(w2);
  } catch (const fl::CancelledError&) {
    std::cout << "waiter cancelled\n";
  }

  std::cout << "-- first exception\n";
  auto fail = [](std::string name, double delay) {
    fl::sleep(delay);
    std::cout << name << " fails\n";
    throw std::runtime_error(name);
  };
  auto a = fl::spawn(fail, "a", 0.05);
  auto b = fl::spawn(fail, "b", 0.001);
  try {
    fl::gather(a, b);
  } catch (const std::runtime_error& e) {
    std::cout << "gather raised " << e.what() << "; a done=" << py(a.done()) << "\n";
  }
  try {
    fl::await(a);
  } catch (const std::runtime_error& e) {
    std::cout << "a raised " << e.what() << "\n";
  }
}

std::string joined(const fl::ExceptionGroup& eg) {
  std::string s;
  for (auto& e : eg.exceptions()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      s += (s.empty() ? "" : ", ") + std::string(ex.what());
    }
  }
  return s;
}

void task_group_failure() {
  std::cout << "-- failure during cancellation\n";
  try {
    fl::task_group([](fl::TaskGroup& g) {
      g.spawn([] {
        try {
          fl::sleep(10);
        } catch (const fl::CancelledError&) {
          std::cout << "slow: cancelled, cleaning up\n";
          fl::sleep(0.001);
          std::cout << "slow: cleanup fails\n";
          throw std::runtime_error("cleanup failed");
        }
      });
      g.spawn([] {
        fl::sleep(0.001);
        std::cout << "fast: fails\n";
        throw std::runtime_error("fast failed");
      });
      try {
        fl::sleep(10);
      } catch (const fl::CancelledError&) {
        std::cout << "body: cancelled\n";
        throw;
      }
    });
  } catch (const fl::ExceptionGroup& eg) {
    std::cout << "group: " << joined(eg) << "\n";
  }
  std::cout << "cancelling: " << fl::current_task()->cancelling() << "\n";

  std::cout << "-- outside cancel, then a child fails\n";
  auto r = fl::spawn([] {
    try {
      fl::task_group([](fl::TaskGroup& g) {
        g.spawn([] {
          fl::sleep(0.05);
          std::cout << "child: crashes\n";
          throw std::runtime_error("crash");
        });
        try {
          fl::sleep(10);
        } catch (const fl::CancelledError&) {
          std::cout << "body: cancelled from outside\n";
          fl::sleep(0.2);
          throw;
        }
      });
    } catch (const fl::ExceptionGroup& eg) {
      std::cout << "runner: group of " << joined(eg)
                << " cancelling: " << fl::current_task()->cancelling() << "\n";
      throw;
    }
  });
  fl::sleep(0.005);
  r.cancel();
  try {
    fl::await(r);
  } catch (const fl::ExceptionGroup&) {
    std::cout << "runner ended with ExceptionGroup\n";
  } catch (const fl::CancelledError&) {
    std::cout << "runner ended with CancelledError\n";
  }
}

void nested_timeouts() {
  auto& loop = fl::get_running_loop();
  std::cout << "-- expiring together\n";
  {
    double when = loop.time() + 0.01;
    fl::Timeout outer = fl::timeout_at(when);
    std::exception_ptr outer_error;
    try {
      fl::Timeout inner = fl::timeout_at(when);
      std::exception_ptr inner_error;
      try {
        fl::sleep(10);
      } catch (...) {
        inner_error = std::current_exception();
      }
      if (inner_error) {
        try {
          inner.exit(inner_error);
        } catch (const fl::CancelledError&) {
          std::cout << "inner: CancelledError, expired: " << py(inner.expired()) << "\n";
          throw;
        }
      }
    } catch (...) {
      outer_error = std::current_exception();
    }
    try {
      if (outer_error) outer.exit(outer_error);
    } catch (const fl::TimeoutError&) {
      std::cout << "outer: TimeoutError, expired: " << py(outer.expired()) << "\n";
    }
    std::cout << "cancelling: " << fl::current_task()->cancelling() << "\n";
  }

  std::cout << "-- inner first\n";
  try {
    fl::with_timeout(0.1, [] {
      try {
        fl::with_timeout(0.001, [] { fl::sleep(10); });
      } catch (const fl::TimeoutError&) {
        std::cout << "inner timed out\n";
      }
      fl::sleep(10);
    });
  } catch (const fl::TimeoutError&) {
    std::cout << "outer timed out\n";
  }

  std::cout << "-- completion and expiry at one instant\n";
  {
    double when = loop.time() + 0.01;
    auto fut = loop.create_future<int>();
    loop.call_at(when, [fut] { fut.set_result(1); });
    try {
      int v = fl::with_timeout_at(when, [&] { return fl::await(fut); });
      std::cout << "value " << v << "\n";
    } catch (const fl::TimeoutError&) {
      std::cout << "TimeoutError\n";
    }
  }

  std::cout << "-- outside cancel at the expiry\n";
  double when = loop.time() + 0.01;
  auto task = fl::spawn([when] {
    fl::Timeout t = fl::timeout_at(when);
    std::exception_ptr error;
    try {
      fl::sleep(10);
    } catch (...) {
      error = std::current_exception();
    }
    try {
      if (error) t.exit(error);
    } catch (const fl::TimeoutError&) {
      std::cout << "TimeoutError\n";
    } catch (const fl::CancelledError&) {
      std::cout << "CancelledError, expired: " << py(t.expired()) << "\n";
      throw;
    }
  });
  loop.call_at(when, [task] { task.cancel(); });
  try {
    fl::await(task);
  } catch (const fl::CancelledError&) {
    std::cout << "task cancelled: " << py(task.cancelled()) << "\n";
  }
}

// what_is_handled() is Python's sys.exception() as a string.
std::string what_is_handled() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  }
}

void exception_per_task() {
  std::cout << "-- rethrow after awaits\n";
  auto rethrows = [](std::string name, std::vector<double> delays) {
    try {
      throw std::runtime_error(name + "'s own error");
    } catch (const std::runtime_error&) {
      for (double d : delays) {
        fl::sleep(d);
        std::cout << name << " handles \"" << what_is_handled() << "\"\n";
      }
      throw;
    }
  };
  auto a = fl::spawn(rethrows, "A", std::vector<double>{0, 0});
  auto b = fl::spawn(rethrows, "B", std::vector<double>{0});
  for (auto& t : {a, b}) {
    try {
      fl::await(t);
    } catch (const std::runtime_error& e) {
      std::cout << "task ended with: " << e.what() << "\n";
    }
  }
  std::cout << "-- nested handlers\n";
  auto nested = [](std::string name) {
    try {
      throw std::runtime_error(name + " outer");
    } catch (const std::runtime_error&) {
      fl::sleep(0);
      try {
        throw std::invalid_argument(name + " inner");
      } catch (const std::invalid_argument&) {
        fl::sleep(0);
        std::cout << name << " inner handler sees " << what_is_handled() << "\n";
      }
      fl::sleep(0);
      std::cout << name << " outer handler sees " << what_is_handled() << "\n";
    }
  };
  auto x = fl::spawn(nested, "X");  // in this order: arguments' order is unspecified
  auto y = fl::spawn(nested, "Y");
  fl::gather(x, y);
  std::cout << "-- cancel inside a handler\n";
  auto blocker = fl::get_running_loop().create_future<void>();
  auto c = fl::spawn([blocker] {
    try {
      throw std::runtime_error("handled");
    } catch (const std::runtime_error&) {
      fl::await(blocker);
      throw;
    }
  });
  fl::sleep(0);
  c.cancel();
  try {
    fl::await(c);
  } catch (const fl::CancelledError&) {
    std::cout << "cancelled: " << py(c.cancelled()) << " blocker cancelled: "
              << py(blocker.cancelled()) << "\n";
  }
}

// ctrl_c is a whole program, run() included: the first SIGINT cancels the
// main task, run() cancels the rest on its way out, then KeyboardInterrupt.
int ctrl_c() {
  auto worker = [](std::string name) {
    struct Unwinds {
      std::string name;
      ~Unwinds() { std::cout << name << " unwinds" << std::endl; }
    } unwinds{name};
    fl::sleep(60);
  };
  try {
    fl::run([&] {
      auto w1 = fl::spawn(worker, "w1");
      auto w2 = fl::spawn(worker, "w2");
      fl::sleep(0);
      struct Unwinds {
        ~Unwinds() { std::cout << "main unwinds" << std::endl; }
      } unwinds;
      try {
        ::kill(::getpid(), SIGINT);
        fl::sleep(60);
      } catch (const fl::CancelledError&) {
        std::cout << "main cancelled" << std::endl;
        throw;
      }
    });
    std::cout << "run returned" << std::endl;
  } catch (const fl::KeyboardInterrupt&) {
    std::cout << "KeyboardInterrupt" << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "ctrl_c") return ctrl_c();
  const std::map<std::string, std::function<void()>> scenarios{
      {"lock_cancel_race", lock_cancel_race},
      {"semaphore_cancel", semaphore_cancel},
      {"queue_cancel", queue_cancel},
      {"gather_cancel", gather_cancel},
      {"task_group_failure", task_group_failure},
      {"nested_timeouts", nested_timeouts},
      {"exception_per_task", exception_per_task},
  };
  if (argc != 2 || !scenarios.count(argv[1])) {
    std::cerr << "usage: twins <scenario>; scenarios:";
    for (auto& [name, fn] : scenarios) std::cerr << " " << name;
    std::cerr << "\n";
    return 2;
  }
  fl::run(scenarios.at(argv[1]));
}
