// producer_consumer: producers and consumers around a bounded queue.
// Two producers put jobs into a Queue that holds at most two, so they wait
// while it is full; three consumers take the jobs. join() waits until every
// job was marked done, then shutdown() sends the idle consumers home.
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>
#include <vector>

namespace {

// producer puts `count` jobs; put() waits while the queue is full.
void producer(fiberloop::Queue<std::string>& queue, const std::string& name, int count) {
  for (int i = 1; i <= count; ++i) {
    std::string job = name + "-job" + std::to_string(i);
    queue.put(job);
    std::cout << name << " put " << job << " (queued: " << queue.qsize() << ")\n";
  }
  std::cout << name << " done\n";
}

// consumer takes jobs until the queue is shut down, and says how many it did.
void consumer(fiberloop::Queue<std::string>& queue, const std::string& name) {
  int handled = 0;
  for (;;) {
    std::string job;
    try {
      job = queue.get();
    } catch (const fiberloop::QueueShutDown&) {
      std::cout << name << " sees the shutdown after " << handled << " jobs\n";
      return;
    }
    fiberloop::sleep(0);  // "work": let the others run
    std::cout << name << " handled " << job << "\n";
    ++handled;
    queue.task_done();
  }
}

}  // namespace

int main() {
  fiberloop::run([] {
    fiberloop::Queue<std::string> queue(2);

    // Consumers first, so they are waiting when the first job arrives.
    std::vector<fiberloop::Task<void>> consumers;
    for (const char* name : {"c1", "c2", "c3"}) {
      consumers.push_back(fiberloop::spawn(consumer, std::ref(queue), std::string(name)));
    }
    auto p1 = fiberloop::spawn(producer, std::ref(queue), std::string("p1"), 3);
    auto p2 = fiberloop::spawn(producer, std::ref(queue), std::string("p2"), 3);

    fiberloop::gather(p1, p2);
    queue.join();  // every job put was handled
    std::cout << "all jobs handled; shutting the queue down\n";
    queue.shutdown();
    fiberloop::gather(consumers);
    std::cout << "done\n";
  });
}
