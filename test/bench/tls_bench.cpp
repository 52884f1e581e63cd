// tls_bench.cpp: what TLS costs a fiberloop connection, each figure next to
// the same work over plain TCP measured in the same run, so that machine
// speed and load cancel out of the ratios:
//
//   connections: one at a time, each a connect, the server's one-byte reply,
//                and both sides' close; over TLS a full handshake too (no
//                session resumption: every client SSL is new), the client
//                verifying the certificate (EC P-256, test/tls/make_certs.sh)
//                and the host name as SslContext::client() does;
//   bulk:        the client writes 256 MiB on one connection, the server
//                reads it with read_into; from the first write (after the
//                handshake) to the server's last byte.
//
// Every wait is bounded (a connection's reads by 10 s, a bulk run by 60 s):
// a failure is an exception out of main, not a hang.
//
// Client and server are tasks of the same loop on one thread: every figure
// is both sides' cost. Connections calibrate to ~0.25 s and keep the best
// of three; bulk keeps the best of three. Exit 77 (a skip) when the
// certificates cannot be made (no openssl command).
//
//   tls_bench MAKE_CERTS_SH
// Run from a release build: meson test -C <builddir> --benchmark --verbose tls
#include <openssl/crypto.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <fiberloop/fiberloop.hpp>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "calibrate.hpp"

namespace net = fiberloop::net;
using bench::Clock;
using bench::seconds_since;

namespace {

constexpr std::size_t kBulk = 256u << 20;
constexpr std::size_t kChunk = 256u << 10;

// The server writes first and closes first: the client reads to the end of
// the stream before it closes, so the TIME_WAIT of each of the many
// connections is the server's, and the client's ephemeral ports are never
// used up.
void reply_and_close(net::StreamReader, net::StreamWriter writer) {
  writer.write("x");
  writer.close();
}

double connections(int port, const net::ConnectOptions& options, long ops) {
  auto start = Clock::now();
  for (long i = 0; i < ops; ++i) {
    auto [reader, writer] = net::open_connection("127.0.0.1", port, options);
    if (fiberloop::with_timeout(10.0, [&] { return reader.read(); }) != "x")
      throw std::runtime_error("connections: the reply is not \"x\"");
    writer.close();
  }
  return seconds_since(start);
}

// Sink is the bulk server's side: it reads the kBulk bytes, reports how
// long that took, and answers "k". The length is known to both sides, and
// the client reads the answer before it closes, because a TLS stream cannot
// end in one direction only, and a client that closes with bytes unread
// (TLS 1.3 session tickets, sent by the server after the handshake) makes
// its kernel reset the connection, dropping the tail of what it sent.
struct Sink {
  fiberloop::Future<std::size_t> done;
  std::vector<char> buffer = std::vector<char>(kChunk);

  void operator()(net::StreamReader reader, net::StreamWriter writer) {
    std::size_t total = 0;
    while (total < kBulk) {
      std::size_t n = reader.read_into(buffer.data(), std::min(buffer.size(), kBulk - total));
      if (n == 0) break;
      total += n;
    }
    done.set_result(total);
    writer.write("k");
    writer.close();
  }
};

double bulk_seconds(int port, const net::ConnectOptions& options, Sink& sink) {
  sink.done = fiberloop::get_running_loop().create_future<std::size_t>();
  auto [reader, writer] = net::open_connection("127.0.0.1", port, options);
  const std::string chunk(kChunk, 'x');
  auto start = Clock::now();
  for (std::size_t sent = 0; sent < kBulk; sent += kChunk) {
    writer.write(chunk);
    writer.drain();  // waits only past the high-water mark
  }
  // Bounded: a server that stops reading fails the run instead of hanging it.
  std::size_t got = fiberloop::wait_for(sink.done, 60.0);
  double took = seconds_since(start);
  if (got != kBulk)
    throw std::runtime_error("bulk: the server read " + std::to_string(got) + " bytes");
  if (fiberloop::with_timeout(10.0, [&] { return reader.read(); }) != "k")
    throw std::runtime_error("bulk: the server's answer is not \"k\"");
  writer.close();
  return took;
}

// best_mib_per_s: the fastest of bench::kRepetitions bulk runs.
double best_mib_per_s(const char* name, int port, const net::ConnectOptions& options, Sink& sink) {
  double best = 0;
  std::printf("# %s: 256 MiB x %d:", name, bench::kRepetitions);
  for (int i = 0; i < bench::kRepetitions; ++i) {
    double mib_s = static_cast<double>(kBulk >> 20) / bulk_seconds(port, options, sink);
    std::printf(" %.0f", mib_s);
    best = std::max(best, mib_s);
  }
  std::printf(" MiB/s\n");
  std::fflush(stdout);
  return best;
}

// two_record_copies_ns(): what a memory BIO pair would add to each 16 KiB
// record received (docs/tls.md, "How the bytes move"): the ciphertext copied
// from the socket's buffer into the BIO, then from the BIO into OpenSSL's
// record buffer; the fd BIO does neither.
double two_record_copies_ns() {
  constexpr std::size_t kRecord = 16 * 1024;
  std::vector<char> from(kRecord, 'c'), bio(kRecord), record(kRecord);
  return bench::best_ns_per_op("two_record_copies", [&](long ops) {
    auto start = Clock::now();
    for (long i = 0; i < ops; ++i) {
      std::memcpy(bio.data(), from.data(), kRecord);
      asm volatile("" : : "r"(bio.data()) : "memory");  // the copies are the work: keep them
      std::memcpy(record.data(), bio.data(), kRecord);
      asm volatile("" : : "r"(record.data()) : "memory");
    }
    return seconds_since(start);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tls_bench MAKE_CERTS_SH\n");
    return 2;
  }
  char dir_template[] = "/tmp/tls_bench.XXXXXX";
  if (!mkdtemp(dir_template)) {
    std::perror("tls_bench: mkdtemp");
    return 1;
  }
  const std::filesystem::path dir = dir_template;
  struct RemoveDir {
    const std::filesystem::path& dir;
    ~RemoveDir() { std::filesystem::remove_all(dir); }
  } remove_dir{dir};
  std::string make_certs = "sh '" + std::string(argv[1]) + "' '" + dir.string() + "'";
  if (std::system(make_certs.c_str()) != 0) {
    std::printf("tls_bench: %s failed (is the openssl command installed?); skipping\n", argv[1]);
    return 77;
  }

  auto server_ctx = net::SslContext::server(dir / "server.pem", dir / "server.key");
  auto client_ctx = net::SslContext::client();
  client_ctx.load_verify_locations(dir / "ca.pem");
  const net::ConnectOptions plain{}, tls{.ssl = client_ctx};

  fiberloop::run([&] {
    auto plain_replies = net::start_server(reply_and_close, "127.0.0.1", 0);
    auto tls_replies = net::start_server(reply_and_close, "127.0.0.1", 0, {.ssl = server_ctx});
    Sink plain_sink, tls_sink;
    auto plain_sinks = net::start_server(std::ref(plain_sink), "127.0.0.1", 0);
    auto tls_sinks = net::start_server(std::ref(tls_sink), "127.0.0.1", 0, {.ssl = server_ctx});
    auto port = [](const net::Server& s) { return s.sockets()[0].port(); };

    {
      auto [reader, writer] = net::open_connection("127.0.0.1", port(tls_replies), tls);
      net::TlsInfo info = *writer.tls();
      std::printf("tls benchmark: %s, %s%s, EC P-256 certificate; %s\n", info.version.c_str(),
                  info.cipher.c_str(), info.peer_verified ? " (verified)" : " (NOT verified)",
                  OpenSSL_version(OPENSSL_VERSION));
      std::printf(
          "client and server: tasks of one loop, one thread; each figure is both sides' cost\n");
      fiberloop::with_timeout(10.0, [&] { return reader.read(); });
      writer.close();
    }

    auto connecting = [&](int p, const net::ConnectOptions& options) {
      return [p, &options](long ops) { return connections(p, options, ops); };
    };
    double plain_ns =
        bench::best_ns_per_op("plain_connection", connecting(port(plain_replies), plain));
    double tls_ns = bench::best_ns_per_op("tls_connection", connecting(port(tls_replies), tls));
    double plain_mib = best_mib_per_s("plain_bulk", port(plain_sinks), plain, plain_sink);
    double tls_mib = best_mib_per_s("tls_bulk", port(tls_sinks), tls, tls_sink);
    double copies_ns = two_record_copies_ns();

    std::printf("\nsummary:\n");
    std::printf(
        "connections: plain TCP %.0f/s, TLS %.0f/s (a TLS connection costs %.1fx a plain one)\n",
        1e9 / plain_ns, 1e9 / tls_ns, tls_ns / plain_ns);
    std::printf("bulk 256 MiB: plain TCP %.0f MiB/s, TLS %.0f MiB/s (%.2fx plain)\n", plain_mib,
                tls_mib, tls_mib / plain_mib);
    double record_ns = 16.0 * 1024 / (tls_mib * 1024 * 1024) * 1e9;
    std::printf(
        "a memory BIO pair would add two 16 KiB copies per record: %.0f ns, %.0f%% of the %.0f ns "
        "a TLS record costs here (both sides)\n",
        copies_ns, 100 * copies_ns / record_ns, record_ns);
    if (std::size_t failed = tls_replies.handshake_failures() + tls_sinks.handshake_failures())
      std::printf("tls benchmark: %zu handshakes failed\n", failed);
    for (net::Server* s : {&plain_replies, &tls_replies, &plain_sinks, &tls_sinks}) {
      s->close();
      s->wait_closed();
    }
  });
  return 0;
}
