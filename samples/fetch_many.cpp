// fetch_many [COUNT CONCURRENCY TIMEOUT [PORT]]: fetches COUNT pages over
// HTTP, at most CONCURRENCY at a time, giving each TIMEOUT seconds (a timer
// made with call_later cancels the fetch's task). Without PORT it serves the
// pages itself, from the same loop, and lets every 7th request (3, 10, 17...)
// hang, to show the timeouts; with PORT it asks 127.0.0.1:PORT (http_hello).
#include <algorithm>
#include <fiberloop/fiberloop.hpp>
#include <iostream>
#include <string>
#include <vector>

namespace net = fiberloop::net;

namespace {

// page_server answers "GET /item/N" with "item N", and never answers a
// stalled request: it waits until the client gives up and hangs up.
void page_server(net::StreamReader reader, net::StreamWriter writer) {
  std::string head = reader.readuntil("\r\n\r\n");
  std::string path = head.substr(4, head.find(' ', 4) - 4);
  int n = std::stoi(path.substr(path.rfind('/') + 1));
  if (n % 7 == 3) {
    reader.read();  // until the client closes
  } else {
    std::string body = "item " + std::to_string(n) + "\n";
    writer.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                 "\r\nConnection: close\r\n\r\n" + body);
  }
  writer.close();
}

// fetch(port, n) is one request, on its own connection, in blocking style.
std::string fetch(int port, int n) {
  auto [reader, writer] = net::open_connection("127.0.0.1", port);
  writer.write("GET /item/" + std::to_string(n) +
               " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  std::string head = reader.readuntil("\r\n\r\n");
  if (head.rfind("HTTP/1.1 200", 0) != 0) throw std::runtime_error("bad status: " + head);
  return reader.read();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 1 && argc != 4 && argc != 5) {
    std::cerr << "usage: fetch_many [COUNT CONCURRENCY TIMEOUT [PORT]]\n";
    return 2;
  }
  int count = argc > 1 ? std::stoi(argv[1]) : 20;
  int concurrency = argc > 1 ? std::stoi(argv[2]) : 4;
  double timeout = argc > 1 ? std::stod(argv[3]) : 0.2;
  int port = argc > 4 ? std::stoi(argv[4]) : 0;

  struct Tally {
    int ok = 0, failed = 0, active = 0, most = 0;
    std::vector<int> timed_out;
  } tally;
  fiberloop::run([&] {
    net::Server own;
    bool own_pages = port == 0;
    if (own_pages) {
      own = net::start_server(page_server, "127.0.0.1", 0);
      port = own.sockets()[0].port();
    }
    auto& loop = fiberloop::get_running_loop();
    int next = 0;
    // The bound on concurrency: a fixed crew of workers taking the next job.
    auto worker = [&] {
      while (next < count) {
        int n = next++;
        tally.most = std::max(tally.most, ++tally.active);
        auto job = fiberloop::spawn(fetch, port, n);
        auto timer = loop.call_later(timeout, [job] { job.cancel("timed out"); });
        try {
          std::string body = fiberloop::await(job);
          if (own_pages && body != "item " + std::to_string(n) + "\n")
            throw std::runtime_error("wrong page: " + body);
          ++tally.ok;
        } catch (const fiberloop::CancelledError&) {
          tally.timed_out.push_back(n);
        } catch (const std::exception& e) {
          std::cerr << "request " << n << ": " << e.what() << "\n";
          ++tally.failed;
        }
        timer.cancel();
        --tally.active;
      }
    };
    std::vector<fiberloop::Task<void>> crew;
    for (int i = 0; i < concurrency; ++i) crew.push_back(fiberloop::spawn(worker));
    for (auto& w : crew) fiberloop::await(w);
    if (own_pages) {
      own.close();
      own.wait_closed();
    }
  });
  std::cout << "fetch_many: " << count << " requests, at most " << concurrency << " at a time, "
            << timeout << " s each\n";
  std::cout << "ok: " << tally.ok << "\n";
  std::cout << "timed out: " << tally.timed_out.size();
  std::sort(tally.timed_out.begin(), tally.timed_out.end());
  for (std::size_t i = 0; i < tally.timed_out.size(); ++i)
    std::cout << (i ? ", " : " (") << tally.timed_out[i]
              << (i + 1 == tally.timed_out.size() ? ")" : "");
  std::cout << "\nfailed: " << tally.failed << "\nmost at once: " << tally.most << "\n";
  return tally.failed == 0 ? 0 : 1;
}
