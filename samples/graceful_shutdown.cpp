// graceful_shutdown PORT [--deadline SECONDS]: a line-protocol server on
// 127.0.0.1:PORT that shuts down gracefully on SIGINT / SIGTERM:
//
//   1. it stops accepting (the listening socket closes: new connections are
//      refused) and hangs up on the idle connections;
//   2. the requests in flight carry on, for SECONDS at most (default 5);
//   3. those still running at the deadline are cancelled; then it exits 0.
//
// A request is a line holding a number of seconds of pretend work: the
// server answers "started S" at once and "done S" that much later, e.g.
//   printf '2\n' | nc 127.0.0.1 PORT
// PORT 0 picks a free port; the first line of output says which. One line
// per phase follows: "stopping: N requests in flight", then "all done" or
// "deadline: cancelled N requests".
#include <signal.h>

#include <cstdlib>
#include <cstring>
#include <fiberloop/fiberloop.hpp>
#include <functional>
#include <iostream>
#include <list>
#include <string>

namespace net = fiberloop::net;

namespace {

std::string requests(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " request" : " requests");
}

// Clients is what the connection tasks and the shutdown share: every
// connection's task, and whether it is busy with a request. The server has
// no list of its handler tasks, so the handlers keep one.
struct Clients {
  struct Client {
    fiberloop::AnyTask task;
    bool busy = false;  // from reading a request to sending its answer
  };
  std::list<Client> list;
  bool stopping = false;
  std::size_t in_flight = 0;
  fiberloop::Event drained;  // set once stopping and nothing is in flight

  void request_done() {
    if (--in_flight == 0 && stopping) drained.set();
  }
};

// serve is one connection: requests one after another until the client hangs
// up or the server stops.
void serve(Clients& clients, net::StreamReader reader, net::StreamWriter writer) {
  if (clients.stopping) {  // accepted just before the listener closed: go away
    writer.close();
    return;
  }
  // Register this task, and unregister it however it ends (answered, reset,
  // cancelled): the shutdown must only ever see live tasks.
  auto me = clients.list.insert(clients.list.end(), {*fiberloop::current_task()});
  struct Leave {
    Clients& clients;
    std::list<Clients::Client>::iterator me;
    ~Leave() {
      if (me->busy) clients.request_done();
      clients.list.erase(me);
    }
  } leave{clients, me};
  try {
    while (!clients.stopping) {              // not one more request once stopping
      std::string line = reader.readline();  // idle here: a shutdown cancels it
      if (line.empty()) break;               // the client hung up
      me->busy = true;
      ++clients.in_flight;
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      double seconds = std::atof(line.c_str());
      writer.write("started " + line + "\n");
      fiberloop::sleep(seconds);  // the work: a shutdown lets it finish, until the deadline
      writer.write("done " + line + "\n");
      writer.drain();
      me->busy = false;
      clients.request_done();
    }
  } catch (const fiberloop::CancelledError&) {
    // Tell the client why before hanging up; write() does not wait, so a
    // cancelled task may still call it. Then end cancelled, as it should.
    writer.write(me->busy ? "cancelled: shutting down\n" : "bye: shutting down\n");
    writer.close();
    throw;
  } catch (const std::exception&) {
    // reset by the peer: nobody to answer
  }
  writer.close();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && !(argc == 4 && std::strcmp(argv[2], "--deadline") == 0)) {
    std::cerr << "usage: graceful_shutdown PORT [--deadline SECONDS]\n";
    return 2;
  }
  int port = std::stoi(argv[1]);
  double deadline = argc == 4 ? std::stod(argv[3]) : 5;
  // Outside run(): the signal handlers stay set until run() closes the loop,
  // after the main task's locals are gone, and may still run until then.
  Clients clients;
  fiberloop::Event stop;
  int signo = 0;
  fiberloop::run([&] {
    // The handlers only set an Event: the shutdown waits, so it belongs in a
    // task (this one), not in a callback. Set before the "listening" line,
    // which is what a test waits for before it signals.
    auto& loop = fiberloop::get_running_loop();
    for (int sig : {SIGINT, SIGTERM}) {
      loop.add_signal_handler(sig, [&, sig] {
        signo = sig;
        stop.set();
      });
    }
    auto server = net::start_server(std::bind_front(serve, std::ref(clients)), "127.0.0.1", port);
    std::cout << "graceful_shutdown: listening on " << server.sockets()[0].to_string() << std::endl;
    stop.wait();

    // 1. No new connections, and no new requests on the old ones: the idle
    // connections are cancelled where they wait for a request.
    server.close();
    clients.stopping = true;
    for (auto& c : clients.list)
      if (!c.busy) c.task.cancel();
    std::cout << "graceful_shutdown: signal " << signo
              << ", stopping: " << requests(clients.in_flight) << " in flight" << std::endl;

    // 2. The requests in flight finish, within the deadline. with_timeout
    // cancels this task's wait when the deadline passes: TimeoutError.
    try {
      if (clients.in_flight > 0) fiberloop::with_timeout(deadline, [&] { clients.drained.wait(); });
      std::cout << "graceful_shutdown: all done" << std::endl;
    } catch (const fiberloop::TimeoutError&) {
      // 3. Too late: cancel what is still running. Each task unwinds (its
      // RAII runs, its client is told) and its connection closes.
      std::size_t cancelled = 0;
      for (auto& c : clients.list)
        if (c.busy && c.task.cancel()) ++cancelled;
      std::cout << "graceful_shutdown: deadline: cancelled " << requests(cancelled) << std::endl;
    }
    // Return once every connection is closed, the cancelled ones included.
    server.wait_closed();
  });
}
