// TLS streams (net/tls.hpp; open_connection with ConnectOptions, start_server
// with ssl, StreamWriter::start_tls) over loopback: fiberloop against itself
// and against openssl s_server / s_client, with the throwaway CA and
// certificates test/tls/make_certs.sh makes (after CPython's test_ssl.py and
// test_asyncio/test_ssl.py).
//
// The script's path comes from meson ("-- --make-certs=PATH"; or the
// variable FIBERLOOP_TLS_MAKE_CERTS). The suite is skipped, saying why, when
// the openssl command is not installed or no script is given (a run by
// hand); a script that is given and fails fails the run.
#include <dirent.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "loop_fixture.hpp"
#include "net_helpers.hpp"

using namespace std::string_literals;
using fiberloop::CancelledError;
using fiberloop::Process;
using fiberloop::RuntimeError;
using fiberloop::Stdio;
using net::Server;
using net::Socket;
using net::SslCertVerificationError;
using net::SslContext;
using net::SslError;
using net::StreamReader;
using net::StreamWriter;
using net::TlsInfo;
using net::Verify;

namespace {

// ---------------------------------------------------------------------------
// The certificates: made once per run into a fresh temporary directory,
// removed when the program ends.

std::string make_certs_script() {
  auto& master = boost::unit_test::framework::master_test_suite();
  for (int i = 1; i < master.argc; ++i) {
    std::string arg = master.argv[i];
    if (arg.rfind("--make-certs=", 0) == 0) return arg.substr(13);
  }
  if (const char* env = std::getenv("FIBERLOOP_TLS_MAKE_CERTS")) return env;
  return "";
}

bool in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  for (;;) {
    std::size_t end = dirs.find(':', start);
    std::string dir = dirs.substr(start, end == std::string::npos ? end : end - start);
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    if (end == std::string::npos) return false;
    start = end + 1;
  }
}

struct Certs {
  std::string dir;      // "" when they could not be made
  std::string why_not;  // then: why
  bool broken = false;  // ...and it is a failure, not a reason to skip

  Certs() {
    std::string script = make_certs_script();
    if (!in_path("openssl")) {
      why_not = "the openssl command is not installed (PATH has none): the TLS tests need it";
      return;
    }
    if (script.empty()) {
      why_not =
          "no certificate script: pass -- --make-certs=PATH/test/tls/make_certs.sh "
          "(meson test does), or set FIBERLOOP_TLS_MAKE_CERTS";
      return;
    }
    broken = true;  // from here on, what goes wrong is the suite's failure
    if (::access(script.c_str(), R_OK) != 0) {
      why_not = "the certificate script \"" + script + "\" is not readable";
      return;
    }
    std::string tmpl = (std::filesystem::temp_directory_path() / "fiberloop-tls-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      why_not = "mkdtemp failed: "s + std::strerror(errno);
      return;
    }
    std::string cmd = "sh '" + script + "' '" + tmpl + "' >'" + tmpl + "/make_certs.log' 2>&1";
    int status = std::system(cmd.c_str());
    if (status != 0 || ::access((tmpl + "/sni.pem").c_str(), R_OK) != 0) {
      why_not = "make_certs.sh failed (status " + std::to_string(status) + "), see " + tmpl +
                "/make_certs.log";
      return;  // the directory stays, for its log
    }
    dir = tmpl;
    broken = false;
  }
  ~Certs() {
    std::error_code ignored;
    if (!dir.empty()) std::filesystem::remove_all(dir, ignored);
  }
  std::string path(const std::string& name) const { return dir + "/" + name; }
};

const Certs& certs() {
  static Certs c;
  return c;
}
std::string cert(const std::string& name) { return certs().path(name); }

// The suite's precondition: the certificates exist.
boost::test_tools::assertion_result certs_ready(boost::unit_test::test_unit_id) {
  const Certs& c = certs();
  boost::test_tools::assertion_result ok(!c.dir.empty());
  if (c.dir.empty()) {
    ok.message() << "skipped: " << c.why_not;
    // Said on stderr too, where a default meson test log shows it.
    static bool said = false;
    if (!said)
      std::cerr << "tls_test: " << (c.broken ? "failed: " : "skipped: ") << c.why_not << "\n";
    said = true;
  }
  return ok;
}

// server_context(name): a server with NAME.pem and NAME.key.
SslContext server_context(const std::string& name = "server") {
  return SslContext::server(cert(name + ".pem"), cert(name + ".key"));
}

// client_context(): SslContext::client() that trusts the test CA too.
SslContext client_context() {
  SslContext c = SslContext::client();
  c.load_verify_locations(cert("ca.pem"));
  return c;
}

// ---------------------------------------------------------------------------
// Loop-side helpers.

struct TlsFixture : LoopFixture {
  TlsFixture() { ::signal(SIGPIPE, SIG_DFL); }  // a send without MSG_NOSIGNAL kills the suite
};

// tls_connect(port, ctx, hostname): a TLS connection to 127.0.0.1:port,
// the certificate checked against hostname ("": the address itself).
std::pair<StreamReader, StreamWriter> tls_connect(int port, const SslContext& ctx,
                                                  const std::string& hostname = "localhost",
                                                  double timeout = 5.0) {
  return net::open_connection(
      "127.0.0.1", port,
      {.ssl = ctx, .server_hostname = hostname, .ssl_handshake_timeout = timeout});
}

// echo_lines echoes each line until the end of the stream; a broken
// connection ends it quietly.
void echo_lines(StreamReader reader, StreamWriter writer) {
  try {
    for (;;) {
      std::string line = reader.readline();
      if (line.empty()) break;
      writer.write(line);
      writer.drain();
    }
  } catch (const std::system_error&) {
    // reset, or a TLS error: nothing to answer
  }
  writer.close();
}

// echo_bytes echoes whatever arrives until the end of the stream.
void echo_bytes(StreamReader reader, StreamWriter writer) {
  try {
    std::vector<char> buf(256 * 1024);
    while (std::size_t n = reader.read_into(buf.data(), buf.size())) {
      writer.write(std::string_view(buf.data(), n));
      writer.drain();
    }
  } catch (const std::system_error&) {
  }
  writer.close();
}

// ask(port, ctx, line, hostname): one line over a new TLS connection, its echo.
std::string ask(int port, const SslContext& ctx, const std::string& line,
                const std::string& hostname = "localhost") {
  auto [r, w] = tls_connect(port, ctx, hostname);
  w.write(line);
  std::string back = r.readline();
  w.close();
  w.wait_closed();
  return back;
}

// eventually(pred): waits (through the loop, bounded) until pred() holds.
template <class Pred>
bool eventually(Pred pred, double limit = 5.0) {
  try {
    fiberloop::with_timeout(limit, [&] {
      while (!pred()) fiberloop::sleep(0.001);
    });
    return true;
  } catch (const fiberloop::TimeoutError&) {
    return pred();
  }
}

// read_to_end(s): everything the raw socket receives until EOF or a reset,
// bounded; "<timeout>" if it never ends.
std::string read_to_end(Socket& s, double limit = 5.0) {
  std::string all;
  try {
    fiberloop::with_timeout(limit, [&] {
      for (;;) {
        std::string part = net::sock_recv(s, 65536);
        if (part.empty()) return;
        all += part;
      }
    });
  } catch (const fiberloop::TimeoutError&) {
    return "<timeout>";
  } catch (const std::system_error&) {
    // reset: the end too
  }
  return all;
}

// refused(fn): fn() must throw SslCertVerificationError; it is returned.
template <class Fn>
std::optional<SslCertVerificationError> refused(Fn fn) {
  try {
    fn();
    BOOST_ERROR("the certificate was accepted");
  } catch (const SslCertVerificationError& e) {
    BOOST_TEST_MESSAGE("refused: " << e.what());
    return e;
  } catch (const std::exception& e) {
    BOOST_ERROR("not a SslCertVerificationError: " << e.what());
  }
  return std::nullopt;
}

// failure_of(fn): what fn() throws as a std::system_error (an SslError is
// one): its errno and what(); {0, ""} if it does not throw.
struct Failure {
  int code = 0;
  std::string what;
  bool ssl = false;     // an SslError
  bool verify = false;  // an SslCertVerificationError
  std::string reason;   // SslError::reason()
};
template <class Fn>
Failure failure_of(Fn fn) {
  Failure f;
  try {
    fn();
  } catch (const SslCertVerificationError& e) {
    f = {e.code().value(), e.what(), true, true, e.reason()};
  } catch (const SslError& e) {
    f = {e.code().value(), e.what(), true, false, e.reason()};
  } catch (const std::system_error& e) {
    f = {e.code().value(), e.what(), false, false, ""};
  }
  if (f.code != 0) BOOST_TEST_MESSAGE("failed: " << f.what);
  return f;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

int open_fd_count() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  BOOST_REQUIRE(dir);
  while (dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
  ::closedir(dir);
  return n - 1;  // the directory's own fd
}

void shut(Server& server) {
  server.close();
  fiberloop::with_timeout(5.0, [&] { server.wait_closed(); });
}

// Reaper kills a child the test did not see to its end (a failed check),
// so that no openssl process outlives the suite.
struct Reaper {
  Process& p;
  ~Reaper() {
    if (!p.returncode()) {
      try {
        p.kill();
      } catch (const std::exception&) {
      }
    }
  }
};

}  // namespace

// Skipping is for a machine without openssl (or a run by hand without the
// script): a script that is given and fails is a failure.
BOOST_AUTO_TEST_CASE(the_test_certificates_are_made) {
  const Certs& c = certs();
  BOOST_TEST_MESSAGE(
      (c.dir.empty() ? "no certificates: " + c.why_not : "certificates in " + c.dir));
  BOOST_TEST(!c.broken, c.why_not);
}

BOOST_FIXTURE_TEST_SUITE(tls, TlsFixture, *boost::unit_test::precondition(certs_ready))

// ---------------------------------------------------------------------------
// 1. fiberloop against fiberloop.

BOOST_AUTO_TEST_CASE(lines_and_bytes_round_trip_and_both_sides_describe_the_session) {
  run([] {
    SslContext sctx = server_context();
    sctx.set_alpn_protocols({"h2", "http/1.1"});
    std::vector<TlsInfo> seen;  // the server side's view, per connection
    Server server = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          seen.push_back(*w.tls());
          echo_bytes(r, w);
        },
        "127.0.0.1", 0, {.ssl = sctx});
    int port = server.sockets()[0].port();

    SslContext cctx = client_context();
    cctx.set_alpn_protocols({"http/1.1"});
    auto [r, w] = tls_connect(port, cctx, "localhost");
    w.write("one line\n");
    BOOST_TEST(r.readline() == "one line\n");
    w.write("two\nthree\n");
    BOOST_TEST(r.readline() == "two\n");
    BOOST_TEST(r.readline() == "three\n");
    // Bytes: every value, a mebibyte of them, whole.
    std::string data(1 << 20, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = pattern(i);
    w.write(data);
    BOOST_TEST((r.readexactly(data.size()) == data));

    std::optional<TlsInfo> info = w.tls();
    BOOST_REQUIRE(info);
    BOOST_TEST(info->version == "TLSv1.3");
    BOOST_TEST(info->cipher.rfind("TLS_", 0) == 0u, info->cipher);
    BOOST_TEST(info->alpn_protocol == "http/1.1");
    BOOST_TEST(info->peer_subject == "CN=localhost");
    BOOST_TEST(info->peer_verified);
    BOOST_TEST(!info->truncated);
    BOOST_REQUIRE(info->native_handle);
    BOOST_TEST(SSL_version(info->native_handle) == TLS1_3_VERSION);
    w.close();
    w.wait_closed();
    BOOST_TEST(!w.tls()->native_handle);  // gone with the connection

    BOOST_REQUIRE(eventually([&] { return seen.size() == 1u; }));
    BOOST_TEST(seen[0].version == "TLSv1.3");
    BOOST_TEST(seen[0].cipher == info->cipher);
    BOOST_TEST(seen[0].alpn_protocol == "http/1.1");
    BOOST_TEST(seen[0].server_name == "localhost");  // the SNI the client sent
    BOOST_TEST(seen[0].peer_subject == "");          // no client certificate
    BOOST_TEST(!seen[0].peer_verified);

    // By address: the certificate's IP entry is checked, and no SNI is sent
    // (RFC 6066). The client offers no ALPN protocol the server lists.
    SslContext other = client_context();
    other.set_alpn_protocols({"spdy/1"});
    {
      auto [r2, w2] = tls_connect(port, other, "");
      w2.write("by address\n");
      BOOST_TEST(r2.readline() == "by address\n");
      BOOST_TEST(w2.tls()->peer_verified);
      BOOST_TEST(w2.tls()->alpn_protocol == "");
      w2.close();
    }
    // The server's order wins (RFC 7301): the client prefers http/1.1.
    SslContext both = client_context();
    both.set_alpn_protocols({"http/1.1", "h2"});
    {
      auto [r3, w3] = tls_connect(port, both);
      BOOST_TEST(w3.tls()->alpn_protocol == "h2");
      w3.write("h2\n");
      BOOST_TEST(r3.readline() == "h2\n");  // one at a time: seen[] is in connection order
      w3.close();
    }
    // No ALPN at all.
    BOOST_TEST(ask(port, client_context(), "plain\n") == "plain\n");
    BOOST_REQUIRE(eventually([&] { return seen.size() == 4u; }));
    BOOST_TEST(seen[1].server_name == "");
    BOOST_TEST(seen[1].alpn_protocol == "");
    BOOST_TEST(seen[2].alpn_protocol == "h2");
    BOOST_TEST(seen[3].alpn_protocol == "");
    BOOST_TEST(server.handshake_failures() == 0u);
    shut(server);
  });
}

BOOST_AUTO_TEST_CASE(a_server_capped_at_tls12_speaks_tls12_and_refuses_a_tls13_minimum) {
  run([] {
    SslContext sctx = server_context();
    BOOST_REQUIRE(SSL_CTX_set_max_proto_version(sctx.native_handle(), TLS1_2_VERSION) == 1);
    sctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256");
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = sctx});
    int port = server.sockets()[0].port();

    {
      auto [r, w] = tls_connect(port, client_context());
      BOOST_TEST(w.tls()->version == "TLSv1.2");
      BOOST_TEST(w.tls()->cipher == "ECDHE-ECDSA-AES128-GCM-SHA256");
      w.write("over 1.2\n");
      BOOST_TEST(r.readline() == "over 1.2\n");
      w.close();
    }

    SslContext modern = client_context();
    modern.set_minimum_version(net::TlsVersion::tls1_3);
    Failure f = failure_of([&] { tls_connect(port, modern); });
    BOOST_TEST(f.ssl);
    BOOST_TEST(!f.verify);
    BOOST_TEST(f.code == EPROTO);
    BOOST_TEST(
        contains(f.what, "TLS handshake with 127.0.0.1:" + std::to_string(port) + " failed: "),
        f.what);
    BOOST_TEST(contains(f.what, "protocol version"), f.what);
    BOOST_TEST(contains(f.what, f.reason));
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 1u; }));

    // The server and the loop go on.
    BOOST_TEST(ask(port, client_context(), "after\n") == "after\n");
    shut(server);
  });
}

// ---------------------------------------------------------------------------
// 2. Refused certificates, and client certificates.

BOOST_AUTO_TEST_CASE(refused_certificates_name_the_reason_and_the_host_name) {
  run([] {
    SslContext cctx = client_context();
    Server good = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context()});
    Server expired =
        net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context("expired")});
    Server wronghost =
        net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context("wronghost")});
    Server unknown =
        net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context("unknown")});
    int good_port = good.sockets()[0].port();
    int expired_port = expired.sockets()[0].port();
    int wronghost_port = wronghost.sockets()[0].port();
    int unknown_port = unknown.sockets()[0].port();
    // A connection that stays open through the refusals.
    auto [kept_r, kept_w] = tls_connect(good_port, cctx);
    kept_w.write("before\n");
    BOOST_TEST(kept_r.readline() == "before\n");

    auto e = refused([&] { tls_connect(expired_port, cctx, "localhost"); });
    if (e) {
      BOOST_TEST(e->verify_code() == X509_V_ERR_CERT_HAS_EXPIRED);
      BOOST_TEST(e->verify_message() == "certificate has expired");
      BOOST_TEST(e->reason() == "certificate verify failed");
      BOOST_TEST(e->code().value() == EPROTO);
      BOOST_TEST(
          contains(e->what(), "TLS handshake with 127.0.0.1:" + std::to_string(expired_port) +
                                  " failed: certificate verify failed: certificate has expired"),
          e->what());
      BOOST_TEST(contains(e->what(), "(verifying host name \"localhost\")"), e->what());
    }
    // A name the (valid) certificate does not carry.
    e = refused([&] { tls_connect(good_port, cctx, "other.example"); });
    if (e) {
      BOOST_TEST(e->verify_code() == X509_V_ERR_HOSTNAME_MISMATCH);
      BOOST_TEST(contains(e->what(), "hostname mismatch"), e->what());
      BOOST_TEST(contains(e->what(), "\"other.example\""), e->what());
    }
    // A certificate for another name.
    e = refused([&] { tls_connect(wronghost_port, cctx, "localhost"); });
    if (e) {
      BOOST_TEST(e->verify_code() == X509_V_ERR_HOSTNAME_MISMATCH);
      BOOST_TEST(contains(e->what(), "\"localhost\""), e->what());
    }
    // ...and an address it does not carry.
    e = refused([&] { tls_connect(wronghost_port, cctx, ""); });
    if (e) {
      BOOST_TEST(e->verify_code() == X509_V_ERR_IP_ADDRESS_MISMATCH);
      BOOST_TEST(contains(e->what(), "\"127.0.0.1\""), e->what());
    }
    // Signed by a CA nobody trusts; and the default context (the system's
    // CAs alone) does not know the test CA.
    e = refused([&] { tls_connect(unknown_port, cctx); });
    if (e) {
      BOOST_TEST(e->verify_code() == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
      BOOST_TEST(contains(e->what(), "unable to get local issuer certificate"), e->what());
    }
    e = refused([&] { tls_connect(good_port, SslContext::client()); });
    if (e) {
      BOOST_TEST(e->verify_code() == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
      BOOST_TEST(contains(e->what(),
                          "unable to get local issuer certificate (verifying host name "
                          "\"localhost\")"),
                 e->what());
    }
    // The right name for wronghost.pem is accepted.
    BOOST_TEST(ask(wronghost_port, cctx, "right name\n", "other.example") == "right name\n");

    // Each refusal failed that handshake on the server too.
    BOOST_TEST(eventually([&] {
      return expired.handshake_failures() == 1u && wronghost.handshake_failures() == 2u &&
             unknown.handshake_failures() == 1u && good.handshake_failures() == 2u;
    }));

    // With the host name check off the chain is still checked, the name not.
    SslContext any_name = client_context();
    any_name.set_check_hostname(false);
    BOOST_TEST((any_name.verify_mode() == Verify::required));
    BOOST_TEST(ask(wronghost_port, any_name, "any name\n", "localhost") == "any name\n");
    e = refused([&] { tls_connect(expired_port, any_name, "localhost"); });
    if (e) {
      BOOST_TEST(e->verify_code() == X509_V_ERR_CERT_HAS_EXPIRED);
      BOOST_TEST(!contains(e->what(), "verifying host name"), e->what());  // it did not
    }

    // Verify::none takes every one of them, and says it verified nothing.
    SslContext trusting = SslContext::client();
    trusting.set_verify_mode(Verify::none);
    BOOST_TEST(!trusting.check_hostname());
    for (int port : {expired_port, wronghost_port, unknown_port, good_port}) {
      auto [r, w] = tls_connect(port, trusting, "localhost");
      w.write("anything goes\n");
      BOOST_TEST(r.readline() == "anything goes\n");
      BOOST_TEST(!w.tls()->peer_verified);
      BOOST_TEST(!w.tls()->peer_subject.empty());
      w.close();
    }

    // The kept connection and new good ones still work.
    kept_w.write("after\n");
    BOOST_TEST(kept_r.readline() == "after\n");
    kept_w.close();
    BOOST_TEST(ask(good_port, cctx, "fresh\n") == "fresh\n");
    for (Server* s : {&good, &expired, &wronghost, &unknown}) shut(*s);
  });
}

BOOST_AUTO_TEST_CASE(a_server_requiring_client_certificates_refuses_a_client_without_one) {
  run([] {
    SslContext sctx = server_context();
    sctx.load_verify_locations(cert("ca.pem"));
    sctx.set_verify_mode(Verify::required);
    BOOST_TEST((sctx.verify_mode() == Verify::required));
    std::vector<TlsInfo> seen;
    Server server = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          seen.push_back(*w.tls());
          echo_lines(r, w);
        },
        "127.0.0.1", 0, {.ssl = sctx});
    int port = server.sockets()[0].port();

    // Without a certificate. In TLS 1.3 the client's handshake ends before
    // the server has looked at its (missing) certificate: the refusal comes
    // as an alert at its first read, or as the end of the stream.
    std::string outcome;
    try {
      auto [r, w] = tls_connect(port, client_context());
      w.write("let me in\n");
      std::string line = r.readline();
      outcome = line.empty() ? "end of stream" : "answered: " + line;
    } catch (const std::system_error& e) {
      outcome = "error: "s + e.what();
    }
    BOOST_TEST_MESSAGE("no client certificate: " << outcome);
    BOOST_TEST(outcome.rfind("answered", 0) != 0u, outcome);
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 1u; }));
    BOOST_TEST(seen.empty());

    // A certificate from another CA.
    SslContext stranger = client_context();
    stranger.load_cert_chain(cert("unknown.pem"), cert("unknown.key"));
    try {
      auto [r, w] = tls_connect(port, stranger);
      w.write("let me in\n");
      outcome = r.readline();
    } catch (const std::system_error& e) {
      outcome = "error: "s + e.what();
    }
    BOOST_TEST(outcome.rfind("let me in", 0) != 0u, outcome);
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 2u; }));

    // With the test CA's client certificate.
    SslContext with_cert = client_context();
    with_cert.load_cert_chain(cert("client.pem"), cert("client.key"));
    BOOST_TEST(ask(port, with_cert, "it's me\n") == "it's me\n");
    BOOST_REQUIRE(eventually([&] { return seen.size() == 1u; }));
    BOOST_TEST(seen[0].peer_subject == "CN=fiberloop-test-client");
    BOOST_TEST(seen[0].peer_verified);
    BOOST_TEST(server.handshake_failures() == 2u);
    shut(server);

    // The server side's error, seen through start_tls.
    Failure refusal;
    Server plain = net::start_server(
        [&](StreamReader, StreamWriter w) { refusal = failure_of([&] { w.start_tls(sctx); }); },
        "127.0.0.1", 0);
    try {
      auto [r, w] = tls_connect(plain.sockets()[0].port(), client_context());
      w.write("let me in\n");
      r.readline();
    } catch (const std::system_error&) {
    }
    BOOST_REQUIRE(eventually([&] { return refusal.code != 0; }));
    // No certificate is nothing refused by verification (as Python's
    // SSLError, not SSLCertVerificationError): OpenSSL's reason says it.
    BOOST_TEST(refusal.ssl);
    BOOST_TEST(!refusal.verify);
    BOOST_TEST(contains(refusal.what, "TLS handshake from 127.0.0.1:"), refusal.what);
    BOOST_TEST(contains(refusal.what, "failed: peer did not return a certificate"), refusal.what);
    // One from an unknown CA is refused by verification, with no host name.
    refusal = {};
    try {
      auto [r, w] = tls_connect(plain.sockets()[0].port(), stranger);
      w.write("let me in\n");
      r.readline();
    } catch (const std::system_error&) {
    }
    BOOST_REQUIRE(eventually([&] { return refusal.code != 0; }));
    BOOST_TEST(refusal.verify, refusal.what);
    BOOST_TEST(contains(refusal.what, "certificate verify failed: unable to get local issuer"),
               refusal.what);
    BOOST_TEST(!contains(refusal.what, "verifying host name"), refusal.what);
    shut(plain);

    // Verify::optional: a client without one is served too.
    SslContext optional = server_context();
    optional.load_verify_locations(cert("ca.pem"));
    optional.set_verify_mode(Verify::optional);
    BOOST_TEST((optional.verify_mode() == Verify::optional));
    seen.clear();
    Server lenient = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          seen.push_back(*w.tls());
          echo_lines(r, w);
        },
        "127.0.0.1", 0, {.ssl = optional});
    int lenient_port = lenient.sockets()[0].port();
    BOOST_TEST(ask(lenient_port, client_context(), "anonymous\n") == "anonymous\n");
    BOOST_TEST(ask(lenient_port, with_cert, "known\n") == "known\n");
    BOOST_REQUIRE(eventually([&] { return seen.size() == 2u; }));
    BOOST_TEST(seen[0].peer_subject == "");
    BOOST_TEST(!seen[0].peer_verified);
    BOOST_TEST(seen[1].peer_subject == "CN=fiberloop-test-client");
    BOOST_TEST(seen[1].peer_verified);
    shut(lenient);
  });
}

// A client that verifies nothing is not told "certificate verify failed"
// when the server refuses it: in TLS 1.2 the server's refusal of the missing
// client certificate comes during the client's handshake, while the client's
// (unchecked) verification of the server's certificate found no issuer.
BOOST_AUTO_TEST_CASE(a_client_that_verifies_nothing_gets_the_servers_refusal_not_a_verify_error) {
  run([] {
    SslContext sctx = server_context();
    BOOST_REQUIRE(SSL_CTX_set_max_proto_version(sctx.native_handle(), TLS1_2_VERSION) == 1);
    sctx.load_verify_locations(cert("ca.pem"));
    sctx.set_verify_mode(Verify::required);
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = sctx});
    int port = server.sockets()[0].port();
    SslContext trusting = SslContext::client();  // the test CA unknown: verification fails, ignored
    trusting.set_verify_mode(Verify::none);
    Failure f = failure_of([&] {
      auto [r, w] = tls_connect(port, trusting);
      w.write("x\n");
      r.readline();
    });
    BOOST_TEST(f.ssl, f.what);
    BOOST_TEST(!f.verify, f.what);
    BOOST_TEST(contains(f.what, "alert"), f.what);
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 1u; }));
    shut(server);
  });
}

// ---------------------------------------------------------------------------
// 3. Real peers: openssl s_server and s_client.

namespace {

// start_s_server(args, port): `openssl s_server -accept 127.0.0.1:PORT
// args...` on a free port, once it listens (it says ACCEPT). A port taken
// meanwhile makes it exit: another port is tried.
Process start_s_server(const std::vector<std::string>& args, int& port) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    port = unused_port();
    std::vector<std::string> argv = {"openssl", "s_server", "-accept",
                                     "127.0.0.1:" + std::to_string(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p = fiberloop::create_subprocess_exec(
        argv, {.in = Stdio::devnull(), .out = Stdio::pipe(), .err = Stdio::pipe()});
    bool listening = false;
    try {
      listening = fiberloop::with_timeout(10.0, [&] {
        for (;;) {
          std::string line = p.stdout_reader().readline();
          if (line.empty()) return false;
          if (line == "ACCEPT\n") return true;
        }
      });
    } catch (const fiberloop::TimeoutError&) {
    }
    if (listening) return p;
    if (!p.returncode()) p.kill();
    fiberloop::with_timeout(5.0, [&] { p.wait(); });
    BOOST_TEST_MESSAGE("s_server on port " << port
                                           << " did not start: " << p.stderr_reader().read());
  }
  BOOST_FAIL("openssl s_server did not start in 5 attempts");
  return {};
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_fiberloop_client_talks_to_openssl_s_server) {
  run(
      [] {
        int port = 0;
        Process p = start_s_server({"-cert", cert("server.pem"), "-key", cert("server.key"), "-rev",
                                    "-alpn", "x-fiberloop,http/1.1"},
                                   port);
        Reaper reaper{p};
        SslContext cctx = client_context();
        cctx.set_alpn_protocols({"x-fiberloop"});
        auto [r, w] = tls_connect(port, cctx, "localhost");
        BOOST_TEST(w.tls()->version == "TLSv1.3");
        BOOST_TEST(w.tls()->peer_subject == "CN=localhost");
        BOOST_TEST(w.tls()->peer_verified);
        BOOST_TEST(w.tls()->alpn_protocol == "x-fiberloop");
        w.write("hello from fiberloop\n");
        BOOST_TEST(fiberloop::with_timeout(5.0, [&] { return r.readline(); }) ==
                   "poolrebif morf olleh\n");
        w.write("a second line\n");
        BOOST_TEST(fiberloop::with_timeout(5.0, [&] { return r.readline(); }) == "enil dnoces a\n");
        // CLOSE makes s_server end the connection, with a close_notify.
        w.write("CLOSE\n");
        BOOST_TEST(fiberloop::with_timeout(5.0, [&] { return r.read(); }) == "");
        BOOST_TEST(!w.tls()->truncated);
        w.close();

        // A certificate the client refuses, from a real server.
        Failure f = failure_of([&] { tls_connect(port, cctx, "other.example"); });
        BOOST_TEST(f.verify, f.what);
        BOOST_TEST(contains(f.what, "hostname mismatch"), f.what);
        p.terminate();
        fiberloop::with_timeout(5.0, [&] { p.wait(); });
      },
      30.0);
}

BOOST_AUTO_TEST_CASE(openssl_s_client_talks_to_a_fiberloop_server) {
  run(
      [] {
        std::vector<TlsInfo> seen;
        auto handler = [&](StreamReader r, StreamWriter w) {
          seen.push_back(*w.tls());
          try {
            std::string line = r.readline();
            w.write("echo: " + line);
          } catch (const std::system_error&) {
          }
          w.close();  // close_notify: s_client -quiet ends there
        };
        Server server = net::start_server(handler, "127.0.0.1", 0, {.ssl = server_context()});
        int port = server.sockets()[0].port();
        auto s_client = [&](std::vector<std::string> extra) {
          std::vector<std::string> argv = {"openssl",
                                           "s_client",
                                           "-connect",
                                           "127.0.0.1:" + std::to_string(port),
                                           "-CAfile",
                                           cert("ca.pem"),
                                           "-verify_return_error",
                                           "-quiet",
                                           "-servername",
                                           "localhost"};
          argv.insert(argv.end(), extra.begin(), extra.end());
          Process p = fiberloop::create_subprocess_exec(
              argv, {.in = Stdio::pipe(), .out = Stdio::pipe(), .err = Stdio::pipe()});
          Reaper reaper{p};
          auto [out, err] =
              fiberloop::with_timeout(10.0, [&] { return p.communicate("hello from s_client\n"); });
          int status = p.wait();
          BOOST_TEST_MESSAGE("s_client exit " << status << ", stderr: " << err);
          return std::make_pair(status, out);
        };

        auto [status, out] = s_client({"-verify_hostname", "localhost"});
        BOOST_TEST(status == 0);
        BOOST_TEST(out == "echo: hello from s_client\n");
        BOOST_REQUIRE(seen.size() == 1u);
        BOOST_TEST(seen[0].version == "TLSv1.3");
        BOOST_TEST(seen[0].server_name == "localhost");

        std::tie(status, out) = s_client({"-verify_hostname", "localhost", "-tls1_2"});
        BOOST_TEST(status == 0);
        BOOST_TEST(out == "echo: hello from s_client\n");
        BOOST_REQUIRE(seen.size() == 2u);
        BOOST_TEST(seen[1].version == "TLSv1.2");

        // s_client refuses the name: its handshake fails, and so the server's.
        std::tie(status, out) = s_client({"-verify_hostname", "other.example"});
        BOOST_TEST(status != 0);
        BOOST_TEST(out == "");
        BOOST_TEST(eventually([&] { return server.handshake_failures() == 1u; }));
        BOOST_TEST(seen.size() == 2u);
        shut(server);

        // A server that wants a client certificate gets s_client's.
        SslContext sctx = server_context();
        sctx.load_verify_locations(cert("ca.pem"));
        sctx.set_verify_mode(Verify::required);
        server = net::start_server(handler, "127.0.0.1", 0, {.ssl = sctx});
        port = server.sockets()[0].port();
        std::tie(status, out) = s_client({"-cert", cert("client.pem"), "-key", cert("client.key")});
        BOOST_TEST(status == 0);
        BOOST_TEST(out == "echo: hello from s_client\n");
        BOOST_REQUIRE(seen.size() == 3u);
        BOOST_TEST(seen[2].peer_subject == "CN=fiberloop-test-client");
        BOOST_TEST(seen[2].peer_verified);
        shut(server);
      },
      30.0);
}

// ---------------------------------------------------------------------------
// 4. Failures that name the problem and end that connection only.

BOOST_AUTO_TEST_CASE(garbage_instead_of_a_client_hello_fails_that_handshake_only) {
  run([] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context()});
    int port = server.sockets()[0].port();
    SslContext cctx = client_context();
    auto [kept_r, kept_w] = tls_connect(port, cctx);

    Socket raw(AF_INET, SOCK_STREAM);
    net::sock_connect(raw, net::Address::ip("127.0.0.1", port));
    net::sock_sendall(raw, "GET / HTTP/1.0\r\n\r\n");
    std::string answer = read_to_end(raw);
    BOOST_TEST(answer != "<timeout>");  // the server ended it
    BOOST_TEST(contains(answer, "HTTP") == false);
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 1u; }));

    kept_w.write("still here\n");
    BOOST_TEST(kept_r.readline() == "still here\n");
    kept_w.close();
    BOOST_TEST(ask(port, cctx, "new\n") == "new\n");
    BOOST_TEST(server.handshake_failures() == 1u);
    shut(server);

    // The server side's error, seen through start_tls: it names the peer
    // and OpenSSL's reason.
    Failure seen;
    Server plain = net::start_server(
        [&](StreamReader, StreamWriter w) {
          seen = failure_of([&] { w.start_tls(server_context()); });
          BOOST_TEST(w.is_closing());  // the failed connection was aborted
        },
        "127.0.0.1", 0);
    Socket raw2(AF_INET, SOCK_STREAM);
    net::sock_connect(raw2, net::Address::ip("127.0.0.1", plain.sockets()[0].port()));
    net::sock_sendall(raw2, "GET / HTTP/1.0\r\n\r\n");
    BOOST_TEST(read_to_end(raw2) != "<timeout>");
    BOOST_REQUIRE(eventually([&] { return seen.code != 0; }));
    BOOST_TEST(seen.ssl);
    BOOST_TEST(seen.code == EPROTO);
    BOOST_TEST(contains(seen.what, "TLS handshake from 127.0.0.1:"), seen.what);
    BOOST_TEST(contains(seen.what, "failed: http request"), seen.what);
    BOOST_TEST(seen.reason == "http request");
    shut(plain);

    // The client's: a server that answers in plain HTTP.
    Socket lst = listener();
    auto http = fiberloop::spawn([&] {
      Socket conn = net::sock_accept(lst).first;
      net::sock_recv(conn, 4096);  // the ClientHello
      net::sock_sendall(conn, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
      read_to_end(conn);
    });
    int http_port = lst.getsockname().port();
    Failure f = failure_of([&] { tls_connect(http_port, cctx); });
    BOOST_TEST(f.ssl);
    BOOST_TEST(!f.verify);
    BOOST_TEST(contains(f.what, "TLS handshake with 127.0.0.1:" + std::to_string(http_port) +
                                    " failed: wrong version number"),
               f.what);
    fiberloop::with_timeout(5.0, [&] { fiberloop::await(http); });
  });
}

BOOST_AUTO_TEST_CASE(a_silent_client_is_cut_off_at_the_servers_handshake_timeout) {
  run([this] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0,
                                      {.ssl = server_context(), .ssl_handshake_timeout = 1.0});
    int port = server.sockets()[0].port();
    double start = loop.time();
    Socket silent(AF_INET, SOCK_STREAM);
    net::sock_connect(silent, net::Address::ip("127.0.0.1", port));
    // Meanwhile a client that does speak is served.
    fiberloop::sleep(0.05);
    BOOST_TEST(ask(port, client_context(), "meanwhile\n") == "meanwhile\n");
    BOOST_TEST(read_to_end(silent) == "");  // closed by the server
    double waited = loop.time() - start;
    // The timeout leaves a loaded sanitizer build time for the good handshake.
    BOOST_TEST(waited >= 0.99, waited);
    BOOST_TEST(waited < 5.0, waited);
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 1u; }));
    // ...and the one served is gone too, once its handler saw the end.
    BOOST_TEST(eventually([&] { return server.connection_count() == 0u; }));
    shut(server);

    // The server side's error names the peer and the timeout.
    Failure seen;
    Server plain = net::start_server(
        [&](StreamReader, StreamWriter w) {
          seen = failure_of([&] { w.start_tls(server_context(), {.ssl_handshake_timeout = 0.2}); });
        },
        "127.0.0.1", 0);
    Socket silent2(AF_INET, SOCK_STREAM);
    net::sock_connect(silent2, net::Address::ip("127.0.0.1", plain.sockets()[0].port()));
    BOOST_TEST(read_to_end(silent2) == "");
    BOOST_REQUIRE(eventually([&] { return seen.code != 0; }));
    BOOST_TEST(seen.code == ECONNABORTED);
    BOOST_TEST(contains(seen.what, "TLS handshake with 127.0.0.1:"), seen.what);
    BOOST_TEST(contains(seen.what, "is taking longer than 0.2 seconds: aborting the connection"),
               seen.what);
    shut(plain);
  });
}

BOOST_AUTO_TEST_CASE(a_server_that_never_answers_is_econnaborted_at_the_clients_timeout) {
  run([this] {
    int fds_before = open_fd_count();
    {
      Socket lst = listener();  // the kernel accepts; nobody reads the ClientHello
      int port = lst.getsockname().port();
      double start = loop.time();
      Failure f = failure_of([&] { tls_connect(port, client_context(), "localhost", 0.2); });
      double waited = loop.time() - start;
      BOOST_TEST(f.code == ECONNABORTED);
      BOOST_TEST(!f.ssl);
      BOOST_TEST(
          contains(f.what, "TLS handshake with 127.0.0.1:" + std::to_string(port) +
                               " is taking longer than 0.2 seconds: aborting the connection"),
          f.what);
      BOOST_TEST(waited >= 0.19, waited);
      BOOST_TEST(waited < 3.0, waited);
    }
    BOOST_TEST(open_fd_count() == fds_before);  // the client's socket was closed
  });
}

BOOST_AUTO_TEST_CASE(a_peer_that_closes_during_the_handshake_is_econnreset) {
  run([] {
    SslContext cctx = client_context();
    for (bool reset : {false, true}) {
      Socket lst = listener();
      auto peer = fiberloop::spawn([&] {
        Socket conn = net::sock_accept(lst).first;
        std::string hello = net::sock_recv(conn, 4096);
        BOOST_TEST(!hello.empty());
        BOOST_TEST(hello[0] == '\x16');  // a handshake record: the ClientHello
        if (reset) reset_on_close(conn.fd());
      });  // closed: FIN, or RST
      int port = lst.getsockname().port();
      Failure f = failure_of([&] { tls_connect(port, cctx); });
      BOOST_TEST(f.code == ECONNRESET, (reset ? "RST: " : "FIN: ") << f.what);
      BOOST_TEST(!f.ssl);
      BOOST_TEST(contains(f.what, "TLS handshake with 127.0.0.1:" + std::to_string(port)), f.what);
      if (!reset)
        BOOST_TEST(contains(f.what, "the peer closed the connection during the handshake"), f.what);
      fiberloop::with_timeout(5.0, [&] { fiberloop::await(peer); });
    }

    // The server side: a client that sends part of a record and goes.
    Failure seen;
    Server plain = net::start_server(
        [&](StreamReader, StreamWriter w) {
          seen = failure_of([&] { w.start_tls(server_context()); });
        },
        "127.0.0.1", 0);
    {
      Socket raw(AF_INET, SOCK_STREAM);
      net::sock_connect(raw, net::Address::ip("127.0.0.1", plain.sockets()[0].port()));
      net::sock_sendall(raw, std::string("\x16\x03\x01\x00", 4));
    }
    BOOST_REQUIRE(eventually([&] { return seen.code != 0; }));
    BOOST_TEST(seen.code == ECONNRESET, seen.what);
    BOOST_TEST(contains(seen.what, "the peer closed the connection during the handshake"),
               seen.what);
    shut(plain);
  });
}

// A record changed on the wire (a proxy in between flips a bit of the
// server's second record): the client's read fails with OpenSSL's reason,
// and only that connection.
BOOST_AUTO_TEST_CASE(a_record_changed_on_the_wire_fails_the_read_naming_it) {
  run([] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context()});
    int server_port = server.sockets()[0].port();
    Socket front = listener();
    bool corrupt = false;
    auto proxy = fiberloop::spawn([&] {
      Socket client = net::sock_accept(front).first;
      Socket upstream(AF_INET, SOCK_STREAM);
      net::sock_connect(upstream, net::Address::ip("127.0.0.1", server_port));
      auto up = fiberloop::spawn([&] {
        try {
          for (;;) {
            std::string part = net::sock_recv(client, 65536);
            if (part.empty()) break;
            net::sock_sendall(upstream, part);
          }
        } catch (const std::system_error&) {
        }
        upstream.shutdown(SHUT_WR);
      });
      try {
        for (;;) {
          std::string part = net::sock_recv(upstream, 65536);
          if (part.empty()) break;
          if (corrupt) {
            part.back() ^= 0x01;  // the record's authentication tag
            corrupt = false;
          }
          net::sock_sendall(client, part);
        }
      } catch (const std::system_error&) {
      }
      client.shutdown(SHUT_WR);
      fiberloop::await(up);
    });
    auto [r, w] = tls_connect(front.getsockname().port(), client_context());
    w.write("first\n");
    BOOST_TEST(r.readline() == "first\n");
    corrupt = true;
    w.write("second\n");
    Failure f = failure_of([&] { r.readline(); });
    BOOST_TEST(f.ssl, f.what);
    BOOST_TEST(f.code == EPROTO);
    BOOST_TEST(contains(f.what, "TLS recv with 127.0.0.1:" +
                                    std::to_string(front.getsockname().port()) + " failed: "),
               f.what);
    BOOST_TEST(contains(f.what, "bad record mac"), f.what);
    w.close();
    fiberloop::with_timeout(5.0, [&] { fiberloop::await(proxy); });
    // The server serves on.
    BOOST_TEST(ask(server_port, client_context(), "unharmed\n") == "unharmed\n");
    shut(server);
  });
}

BOOST_AUTO_TEST_CASE(a_close_without_close_notify_reads_as_the_end_flagged_truncated) {
  run([] {
    Server server = net::start_server(
        [](StreamReader r, StreamWriter w) {
          w.write("first\n");
          w.drain();  // sent now: abort() below drops only what is unsent
          std::string how = r.readline();
          if (how == "abort\n") {
            w.abort();  // no close_notify
          } else {
            w.close();  // close_notify
          }
        },
        "127.0.0.1", 0, {.ssl = server_context()});
    int port = server.sockets()[0].port();
    SslContext cctx = client_context();
    {
      auto [r, w] = tls_connect(port, cctx);
      BOOST_TEST(r.readline() == "first\n");
      w.write("abort\n");
      BOOST_TEST(r.readline() == "");
      BOOST_TEST(r.at_eof());
      BOOST_TEST(r.read() == "");  // and again, no error
      BOOST_TEST(w.tls()->truncated);
      w.close();
    }
    {
      auto [r, w] = tls_connect(port, cctx);
      BOOST_TEST(r.readline() == "first\n");
      w.write("close\n");
      BOOST_TEST(r.readline() == "");
      BOOST_TEST(r.at_eof());
      BOOST_TEST(!w.tls()->truncated);
      w.close();
    }
    // readexactly across a truncation: what arrived, as IncompleteReadError.
    {
      auto [r, w] = tls_connect(port, cctx);
      w.write("abort\n");
      try {
        r.readexactly(100);
        BOOST_ERROR("readexactly(100) returned");
      } catch (const fiberloop::IncompleteReadError& e) {
        BOOST_TEST(e.partial == "first\n");
      }
      BOOST_TEST(w.tls()->truncated);
      w.close();
    }
    BOOST_TEST(server.handshake_failures() == 0u);
    shut(server);

    // The server's view of a client that aborts, and of one that closes.
    std::vector<bool> truncated;
    Server reader_server = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          w.write("ready\n");
          std::string all = r.read();
          truncated.push_back(all == "bye\n" && w.tls()->truncated);
          w.close();
        },
        "127.0.0.1", 0, {.ssl = server_context()});
    for (bool abort : {true, false}) {
      auto [r, w] = tls_connect(reader_server.sockets()[0].port(), cctx);
      // Read first, and with it the session tickets that came before: a
      // socket closed with unread bytes sends RST, not FIN.
      BOOST_TEST(r.readline() == "ready\n");
      w.write("bye\n");
      w.drain();  // sent now: abort() drops only what is unsent
      if (abort) {
        w.abort();
      } else {
        w.close();
      }
      w.wait_closed();
      BOOST_REQUIRE(eventually([&] { return truncated.size() == (abort ? 1u : 2u); }));
    }
    BOOST_TEST((truncated == std::vector<bool>{true, false}));
    shut(reader_server);
  });
}

// A TLS 1.3 key update asked for mid-stream: each side goes on with new keys,
// the reader answering the peer's request.
BOOST_AUTO_TEST_CASE(a_key_update_mid_stream_is_answered_and_the_stream_goes_on) {
  run([] {
    Server server = net::start_server(
        [](StreamReader r, StreamWriter w) {
          try {
            for (int round = 0;; ++round) {
              std::string line = r.readline();
              if (line.empty()) break;
              if (round % 2 == 1) {
                BOOST_TEST(SSL_key_update(w.tls()->native_handle, SSL_KEY_UPDATE_REQUESTED) == 1);
              }
              w.write(line);
              w.drain();
            }
          } catch (const std::exception& e) {
            BOOST_ERROR("server: " << e.what());
          }
          w.close();
        },
        "127.0.0.1", 0, {.stream = {.limit = 1 << 20}, .ssl = server_context()});
    auto [r, w] = net::open_connection(
        "127.0.0.1", server.sockets()[0].port(),
        {.stream = {.limit = 1 << 20}, .ssl = client_context(), .server_hostname = "localhost"});
    // Several records each way, all written at once: the client's sender
    // is part-way through its records, the socket full, when its reader
    // gets the server's requests to update.
    std::string big(200 * 1024, 'k');
    constexpr int kRounds = 8;
    for (int round = 0; round < kRounds; ++round) w.write(std::to_string(round) + big + "\n");
    for (int round = 0; round < kRounds; ++round)
      BOOST_TEST((r.readline() == std::to_string(round) + big + "\n"), "round " << round);
    w.close();
    w.wait_closed();
    shut(server);
  });
}

// ---------------------------------------------------------------------------
// 5. Scale, bulk, cancellation.

BOOST_AUTO_TEST_CASE(a_thousand_concurrent_tls_connections_through_one_loop) {
  constexpr int kClients = 1000;
  if (!enough_fds_for(kClients)) return;
  int served = run(
      [] {
        Server server = net::start_server(echo_lines, "127.0.0.1", 0,
                                          {.backlog = kClients, .ssl = server_context()});
        int port = server.sockets()[0].port();
        SslContext cctx = client_context();
        std::vector<fiberloop::Task<int>> clients;
        int connected = 0;
        auto gate = fiberloop::get_running_loop().create_future<void>();
        for (int i = 0; i < kClients; ++i) {
          clients.push_back(fiberloop::spawn([&, i] {
            auto [r, w] = tls_connect(port, cctx, "localhost", 30.0);
            if (++connected == kClients) gate.set_result();
            // Every handshake is done before anybody talks: 1000 sessions at once.
            fiberloop::await(gate);
            std::string line = "line from " + std::to_string(i) + "\n";
            w.write(line);
            bool ok = r.readline() == line && w.tls()->peer_verified;
            w.close();
            return ok ? 1 : 0;
          }));
        }
        fiberloop::with_timeout(50.0, [&] { fiberloop::await(gate); });
        BOOST_TEST(server.connection_count() == static_cast<std::size_t>(kClients));
        int ok = 0;
        for (auto& c : clients) ok += fiberloop::await(c);
        BOOST_TEST(server.handshake_failures() == 0u);
        shut(server);
        return ok;
      },
      60.0);
  BOOST_TEST(served == kClients);
}

// A client that writes and closes without reading has never read the TLS
// 1.3 server's session tickets: closed with them unread, its socket would
// send a reset and drop what was still queued. close() drops them first.
BOOST_AUTO_TEST_CASE(a_client_that_writes_and_closes_without_reading_loses_nothing) {
  static constexpr std::size_t kTotal = 8u << 20;
  run(
      [] {
        auto received = fiberloop::get_running_loop().create_future<std::string>();
        Server server = net::start_server(
            [received](StreamReader r, StreamWriter w) mutable {
              std::size_t total = 0;
              try {
                std::vector<char> buf(64 * 1024);
                while (std::size_t n = r.read_into(buf.data(), buf.size())) total += n;
                received.set_result(std::to_string(total) + " bytes, then the end");
              } catch (const std::exception& e) {
                received.set_result(std::to_string(total) + " bytes, then " + e.what());
              }
              w.close();
            },
            "127.0.0.1", 0, {.ssl = server_context()});
        auto [reader, writer] = tls_connect(server.sockets()[0].port(), client_context());
        fiberloop::sleep(0.05);  // the tickets arrive meanwhile; nothing reads them
        writer.write(std::string(kTotal, 'x'));
        writer.close();
        std::string got = fiberloop::wait_for(received, 20.0);
        BOOST_TEST(got == std::to_string(kTotal) + " bytes, then the end");
        BOOST_TEST(!writer.tls()->truncated);
        shut(server);
      },
      60.0);
}

BOOST_AUTO_TEST_CASE(a_client_given_a_ca_file_trusts_that_file_only) {
  run([] {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context()});
    int port = server.sockets()[0].port();
    BOOST_TEST(ask(port, SslContext::client(cert("ca.pem")), "trusted\n") == "trusted\n");
    auto e = refused([&] { tls_connect(port, SslContext::client(cert("other_ca.pem"))); });
    BOOST_REQUIRE(e.has_value());
    BOOST_TEST(e->verify_code() == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    shut(server);
  });
}

BOOST_AUTO_TEST_CASE(a_64_mib_echo_arrives_intact) {
  static constexpr std::size_t kTotal = 64u << 20;
  run(
      [] {
        Server server = net::start_server(echo_bytes, "127.0.0.1", 0, {.ssl = server_context()});
        auto [reader, writer] = tls_connect(server.sockets()[0].port(), client_context());
        auto sender = fiberloop::spawn([&, w = writer] {
          StreamWriter out = w;
          std::string chunk(256 * 1024, '\0');
          for (std::size_t off = 0; off < kTotal; off += chunk.size()) {
            for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = pattern(off + i);
            out.write(chunk);
            out.drain();
          }
        });
        std::size_t got = 0, bad = 0, first_bad = kTotal;
        std::vector<char> data(256 * 1024);
        while (got < kTotal) {
          std::size_t n = reader.read_into(data.data(), data.size());
          if (n == 0) break;
          for (std::size_t i = 0; i < n; ++i) {
            if (data[i] != pattern(got + i)) {
              if (bad++ == 0) first_bad = got + i;
            }
          }
          got += n;
        }
        fiberloop::await(sender);
        BOOST_TEST(got == kTotal);
        BOOST_TEST(bad == 0u, "first wrong byte at offset " << first_bad);
        writer.close();
        writer.wait_closed();
        shut(server);
      },
      120.0);
}

BOOST_AUTO_TEST_CASE(cancelling_a_task_in_open_connections_handshake_leaves_no_fd_open) {
  run([] {
    int fds_before = open_fd_count();
    {
      Socket lst = listener();
      int port = lst.getsockname().port();
      auto client =
          fiberloop::spawn([&] { tls_connect(port, client_context(), "localhost", 60.0); });
      Socket peer = net::sock_accept(lst).first;
      // The ClientHello arrived: the client waits in its handshake.
      std::string hello = fiberloop::with_timeout(5.0, [&] { return net::sock_recv(peer, 4096); });
      BOOST_TEST(!hello.empty());
      BOOST_TEST(!client.done());
      client.cancel();
      BOOST_CHECK_THROW(fiberloop::with_timeout(5.0, [&] { fiberloop::await(client); }),
                        CancelledError);
      BOOST_TEST(client.cancelled());
      // Its socket is closed: the peer sees the end.
      BOOST_TEST(read_to_end(peer) == "");
    }
    BOOST_TEST(open_fd_count() == fds_before);
    // The loop goes on: a real connection works.
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context()});
    BOOST_TEST(ask(server.sockets()[0].port(), client_context(), "fine\n") == "fine\n");
    shut(server);
  });
}

BOOST_AUTO_TEST_CASE(abort_clients_ends_handshakes_in_progress) {
  run([] {
    int handlers = 0;
    Server server = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          ++handlers;
          echo_lines(r, w);
        },
        "127.0.0.1", 0, {.ssl = server_context()});
    int port = server.sockets()[0].port();
    Socket silent1(AF_INET, SOCK_STREAM), silent2(AF_INET, SOCK_STREAM);
    net::sock_connect(silent1, net::Address::ip("127.0.0.1", port));
    net::sock_connect(silent2, net::Address::ip("127.0.0.1", port));
    BOOST_REQUIRE(eventually([&] { return server.connection_count() == 2u; }));
    server.abort_clients();
    BOOST_TEST(server.connection_count() == 0u);
    BOOST_TEST(read_to_end(silent1) == "");
    BOOST_TEST(read_to_end(silent2) == "");
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 2u; }));
    BOOST_TEST(handlers == 0);
    // Still serving.
    BOOST_TEST(ask(port, client_context(), "next\n") == "next\n");
    BOOST_TEST(handlers == 1);
    // And wait_closed() is not held up by a handshake that close_clients ends.
    BOOST_REQUIRE(eventually([&] { return server.connection_count() == 0u; }));
    Socket silent3(AF_INET, SOCK_STREAM);
    net::sock_connect(silent3, net::Address::ip("127.0.0.1", port));
    BOOST_REQUIRE(eventually([&] { return server.connection_count() == 1u; }));
    server.close();
    server.close_clients();
    fiberloop::with_timeout(5.0, [&] { server.wait_closed(); });
    BOOST_TEST(read_to_end(silent3) == "");
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 3u; }));
  });
}

// ---------------------------------------------------------------------------
// 6. start_tls.

BOOST_AUTO_TEST_CASE(starttls_upgrades_a_plain_connection_on_both_sides) {
  run([] {
    std::optional<TlsInfo> server_side;
    Server server = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          if (r.readline() != "STARTTLS\n") return w.close();
          w.write("GO\n");
          w.start_tls(server_context());
          server_side = w.tls();
          echo_lines(r, w);
        },
        "127.0.0.1", 0);
    int port = server.sockets()[0].port();
    auto [r, w] = net::open_connection("127.0.0.1", port);
    BOOST_TEST(!w.tls());
    BOOST_TEST(w.can_write_eof());
    w.write("STARTTLS\n");
    BOOST_TEST(r.readline() == "GO\n");
    w.start_tls(client_context(), {.server_hostname = "localhost"});
    BOOST_REQUIRE(w.tls());
    BOOST_TEST(w.tls()->version == "TLSv1.3");
    BOOST_TEST(w.tls()->peer_subject == "CN=localhost");
    BOOST_TEST(w.tls()->peer_verified);
    BOOST_TEST(!w.can_write_eof());
    w.write("secret one\nsecret two\n");
    BOOST_TEST(r.readline() == "secret one\n");
    BOOST_TEST(r.readline() == "secret two\n");
    BOOST_REQUIRE(server_side);
    BOOST_TEST(server_side->server_name == "localhost");

    // Misuse, which leaves the connection as it was.
    BOOST_CHECK_THROW(w.start_tls(client_context(), {.server_hostname = "localhost"}),
                      RuntimeError);
    BOOST_CHECK_THROW(w.write_eof(), RuntimeError);
    w.write("still fine\n");
    BOOST_TEST(r.readline() == "still fine\n");
    w.close();
    BOOST_TEST(r.read() == "");
    BOOST_TEST(!w.tls()->truncated);
    BOOST_CHECK_THROW(w.start_tls(client_context(), {.server_hostname = "localhost"}),
                      RuntimeError);
    shut(server);
  });
}

// The client's first TLS bytes come right behind its STARTTLS line, before
// the server said anything: the server's reader has them buffered already,
// and start_tls hands them to the handshake.
BOOST_AUTO_TEST_CASE(start_tls_takes_the_client_hello_the_reader_had_buffered) {
  run([] {
    std::size_t buffered_at_start = 0;
    Server server = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          // Wait (bounded) until the ClientHello is in the socket too, so
          // that the readline below buffers some of it.
          eventually([&] {
            int n = 0;
            ::ioctl(w.socket().fd(), FIONREAD, &n);
            return n > 20;
          });
          if (r.readline() != "STARTTLS\n") return w.close();
          buffered_at_start = r.buffered();
          w.start_tls(server_context());
          echo_lines(r, w);
        },
        "127.0.0.1", 0);
    auto [r, w] = net::open_connection("127.0.0.1", server.sockets()[0].port());
    w.write("STARTTLS\n");
    w.start_tls(client_context(), {.server_hostname = "localhost"});
    w.write("through\n");
    BOOST_TEST(r.readline() == "through\n");
    BOOST_TEST(buffered_at_start > 0u);
    w.close();
    shut(server);
  });
}

BOOST_AUTO_TEST_CASE(start_tls_misuse) {
  run([] {
    Socket lst = listener();
    int port = lst.getsockname().port();
    auto [r, w] = net::open_connection("127.0.0.1", port);
    Socket peer = net::sock_accept(lst).first;
    net::sock_sendall(peer, "a\nb\n");
    BOOST_TEST(r.readline() == "a\n");  // "b\n" is buffered now

    BOOST_CHECK_THROW(w.start_tls(SslContext()), std::invalid_argument);
    BOOST_CHECK_THROW(
        w.start_tls(client_context(), {.server_hostname = "localhost", .ssl_handshake_timeout = 0}),
        std::invalid_argument);
    // The host name check with no host name to check.
    try {
      w.start_tls(client_context());
      BOOST_ERROR("start_tls() without a server_hostname went on");
    } catch (const std::invalid_argument& e) {
      BOOST_TEST(contains(e.what(), "server_hostname"), e.what());
    }
    BOOST_CHECK_THROW(w.start_tls(client_context(), {.server_hostname = "a\0b"s}),
                      std::invalid_argument);
    // None of that touched the plain connection or what it had buffered.
    BOOST_TEST(!w.tls());
    BOOST_TEST(!w.is_closing());
    BOOST_TEST(r.buffered() == 2u);
    BOOST_TEST(r.readline() == "b\n");
    w.write("plain still\n");
    BOOST_TEST(fiberloop::with_timeout(5.0, [&] { return net::sock_recv(peer, 100); }) ==
               "plain still\n");

    // Another task reading: refused, and that reader keeps waiting.
    auto reading = fiberloop::spawn([&] { return r.readline(); });
    fiberloop::sleep(0);
    BOOST_CHECK_THROW(w.start_tls(client_context(), {.server_hostname = "localhost"}),
                      RuntimeError);
    net::sock_sendall(peer, "for the reader\n");
    BOOST_TEST(fiberloop::with_timeout(5.0, [&] { return fiberloop::await(reading); }) ==
               "for the reader\n");

    // A failed handshake (the raw peer never answers) aborts the connection.
    SslContext trusting = SslContext::client();
    trusting.set_verify_mode(Verify::none);
    Failure f = failure_of([&] { w.start_tls(trusting, {.ssl_handshake_timeout = 0.1}); });
    BOOST_TEST(f.code == ECONNABORTED, f.what);
    BOOST_TEST(w.is_closing());
    BOOST_CHECK_THROW(w.write("x"), RuntimeError);
    BOOST_CHECK_THROW(w.start_tls(trusting), RuntimeError);
  });
}

// ---------------------------------------------------------------------------
// 7. Bounds and misuse of the contexts; SNI.

BOOST_AUTO_TEST_CASE(an_empty_context_refuses_every_call) {
  SslContext empty;
  BOOST_TEST(!empty);
  BOOST_CHECK_THROW(empty.is_server(), std::invalid_argument);
  BOOST_CHECK_THROW(empty.load_verify_locations(cert("ca.pem")), std::invalid_argument);
  BOOST_CHECK_THROW(empty.load_default_verify_paths(), std::invalid_argument);
  BOOST_CHECK_THROW(empty.load_cert_chain(cert("server.pem"), cert("server.key")),
                    std::invalid_argument);
  BOOST_CHECK_THROW(empty.set_verify_mode(Verify::none), std::invalid_argument);
  BOOST_CHECK_THROW(empty.verify_mode(), std::invalid_argument);
  BOOST_CHECK_THROW(empty.set_check_hostname(true), std::invalid_argument);
  BOOST_CHECK_THROW(empty.check_hostname(), std::invalid_argument);
  BOOST_CHECK_THROW(empty.set_alpn_protocols({"h2"}), std::invalid_argument);
  BOOST_CHECK_THROW(empty.set_minimum_version(net::TlsVersion::tls1_3), std::invalid_argument);
  BOOST_CHECK_THROW(empty.set_ciphers("HIGH"), std::invalid_argument);
  BOOST_CHECK_THROW(empty.set_servername_callback(nullptr), std::invalid_argument);
  BOOST_CHECK_THROW(empty.native_handle(), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(files_keys_and_names_that_are_refused_are_named) {
  auto names = [](auto fn, const std::vector<std::string>& parts) {
    try {
      fn();
      BOOST_ERROR("accepted");
    } catch (const SslError& e) {
      BOOST_TEST_MESSAGE("refused: " << e.what());
      BOOST_TEST(e.code().value() == EPROTO);
      for (const std::string& p : parts) BOOST_TEST(contains(e.what(), p), e.what() << " / " << p);
    }
  };
  std::string missing = cert("no-such.pem");
  names([&] { SslContext::server(missing); }, {missing});
  names([&] { SslContext::server(cert("server.pem"), missing); }, {missing});
  SslContext c = SslContext::client();
  names([&] { c.load_cert_chain(missing, cert("client.key")); }, {missing});
  // A key that is not the certificate's.
  names([&] { c.load_cert_chain(cert("client.pem"), cert("server.key")); }, {cert("server.key")});
  names([&] { SslContext::server(cert("server.pem"), cert("sni.key")); }, {cert("sni.key")});
  names([&] { c.load_verify_locations(missing); }, {missing});
  names([&] { c.set_ciphers("NO-SUCH-CIPHER"); }, {"NO-SUCH-CIPHER"});
  // A file that is not there is said in words, not as OpenSSL's error code.
  names([&] { SslContext::client(missing); }, {missing, "No such file or directory"});
  BOOST_CHECK_THROW(c.load_verify_locations(""), std::invalid_argument);

  // ALPN names are 1..255 bytes.
  BOOST_CHECK_THROW(c.set_alpn_protocols({"h2", ""}), std::invalid_argument);
  BOOST_CHECK_THROW(c.set_alpn_protocols({std::string(256, 'p')}), std::invalid_argument);
  BOOST_CHECK_NO_THROW(c.set_alpn_protocols({std::string(255, 'p'), "h2"}));
  BOOST_CHECK_NO_THROW(c.set_alpn_protocols({}));

  // What belongs to one side only.
  SslContext s = server_context();
  BOOST_TEST(s.is_server());
  BOOST_TEST(!c.is_server());
  BOOST_CHECK_THROW(s.set_check_hostname(true), std::invalid_argument);
  BOOST_CHECK_THROW(c.set_servername_callback([](std::string_view) { return SslContext(); }),
                    std::invalid_argument);
  // The client's checks go together.
  BOOST_TEST(c.check_hostname());
  BOOST_TEST((c.verify_mode() == Verify::required));
  c.set_verify_mode(Verify::none);
  BOOST_TEST(!c.check_hostname());
  c.set_check_hostname(true);
  BOOST_TEST((c.verify_mode() == Verify::required));
  BOOST_TEST((s.verify_mode() == Verify::none));
}

BOOST_AUTO_TEST_CASE(a_context_of_the_wrong_side_is_refused) {
  run([] {
    try {
      net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = client_context()});
      BOOST_ERROR("start_server took a client context");
    } catch (const std::invalid_argument& e) {
      BOOST_TEST(contains(e.what(), "client"), e.what());
    }
    BOOST_CHECK_THROW(net::start_server(echo_lines, "127.0.0.1", 0,
                                        {.ssl = server_context(), .ssl_handshake_timeout = 0}),
                      std::invalid_argument);
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = server_context()});
    int port = server.sockets()[0].port();
    int fds = open_fd_count();
    BOOST_CHECK_THROW(tls_connect(port, server_context()), std::invalid_argument);
    BOOST_TEST(open_fd_count() == fds);
    BOOST_TEST(ask(port, client_context(), "ok\n") == "ok\n");
    shut(server);
  });
}

BOOST_AUTO_TEST_CASE(an_sni_callback_picks_the_certificate_and_its_failure_fails_that_handshake) {
  run([] {
    SslContext sni = server_context("sni");
    std::vector<std::string> asked;
    SslContext sctx = server_context();
    sctx.set_servername_callback([&](std::string_view name) {
      asked.emplace_back(name);
      if (name == "sni.example") return sni;
      if (name == "boom.example") throw std::runtime_error("no certificate for that");
      if (name == "client.example") return client_context();  // not a server's
      return SslContext();
    });
    std::vector<TlsInfo> seen;
    Server server = net::start_server(
        [&](StreamReader r, StreamWriter w) {
          seen.push_back(*w.tls());
          echo_lines(r, w);
        },
        "127.0.0.1", 0, {.ssl = sctx});
    int port = server.sockets()[0].port();
    SslContext cctx = client_context();
    {
      auto [r, w] = tls_connect(port, cctx, "sni.example");
      BOOST_TEST(w.tls()->peer_subject == "CN=sni.example");
      BOOST_TEST(w.tls()->peer_verified);
      w.write("by name\n");
      BOOST_TEST(r.readline() == "by name\n");
      w.close();
    }
    BOOST_TEST(ask(port, cctx, "default\n", "localhost") == "default\n");
    BOOST_TEST(ask(port, cctx, "no sni\n", "") == "no sni\n");
    BOOST_REQUIRE(eventually([&] { return seen.size() == 3u; }));
    BOOST_TEST(seen[0].server_name == "sni.example");
    BOOST_TEST(seen[1].server_name == "localhost");
    BOOST_TEST(seen[2].server_name == "");

    for (const char* bad : {"boom.example", "client.example"}) {
      Failure f = failure_of([&] { tls_connect(port, cctx, bad); });
      BOOST_TEST(f.ssl, bad << ": " << f.what);
      BOOST_TEST(!f.verify, bad << ": " << f.what);
      BOOST_TEST(contains(f.what, "internal error"), f.what);
    }
    BOOST_TEST(eventually([&] { return server.handshake_failures() == 2u; }));
    // The callback's failure was that handshake's only.
    BOOST_TEST(ask(port, cctx, "again\n", "sni.example") == "again\n");
    BOOST_TEST((asked == std::vector<std::string>{"sni.example", "localhost", "", "boom.example",
                                                  "client.example", "sni.example"}));
    shut(server);
  });
}

// Two loops on two threads share one server context and one client
// context (SSL_CTX is thread-safe once configured): each serves, and
// connects to the other's server. Under TSan this is the threaded path.
BOOST_AUTO_TEST_CASE(two_loops_share_one_server_context_and_one_client_context) {
  constexpr int kClientsPerLoop = 20;
  SslContext sctx = server_context();
  SslContext cctx = client_context();
  std::atomic<int> ports[2] = {0, 0};
  std::atomic<int> finished{0};
  fiberloop::LoopGroup group(2);
  // BOOST_TEST is not thread-safe: each loop returns its count, checked here.
  std::vector<int> echoed = group.run([&](std::size_t index) {
    Server server = net::start_server(echo_lines, "127.0.0.1", 0, {.ssl = sctx});
    ports[index] = server.sockets()[0].port();
    std::size_t other = 1 - index;
    bool ready = eventually([&] { return ports[other].load() != 0; });
    int ok = 0;
    for (int i = 0; ready && i < kClientsPerLoop; ++i) {
      std::string line = "loop " + std::to_string(index) + " line " + std::to_string(i) + "\n";
      if (ask(ports[other], cctx, line) == line) ++ok;
    }
    // The other loop's clients may still be talking to this server.
    ++finished;
    eventually([&] { return finished.load() == 2; }, 30.0);
    shut(server);
    return ok;
  });
  BOOST_TEST(echoed[0] == kClientsPerLoop);
  BOOST_TEST(echoed[1] == kClientsPerLoop);
}

BOOST_AUTO_TEST_SUITE_END()
