// net/tls.hpp: SslContext (OpenSSL), the TLS errors and what a TLS stream reports about itself.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "fiberloop/export.hpp"

// OpenSSL's own types, so that this header does not pull in its headers.
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace fiberloop::net {

// SslError is a TLS failure: a handshake refused, a record that does not
// decrypt, garbage where a ClientHello should be. A std::system_error (code
// EPROTO), as asyncio's ssl.SSLError is an OSError: code that handles a
// connection's failures catches both. what() names the peer and OpenSSL's
// reason, e.g. "TLS handshake with 127.0.0.1:4433 failed: wrong version number".
class FIBERLOOP_API SslError : public std::system_error {
 public:
  SslError(const std::string& what, std::string reason);
  // what() is the message as given, without system_error's ": Protocol error".
  const char* what() const noexcept override { return what_.c_str(); }
  // reason() is OpenSSL's reason alone ("wrong version number").
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string what_;
  std::string reason_;
};

// SslCertVerificationError: the peer's certificate was refused (asyncio's
// ssl.SSLCertVerificationError). what() says why and for which host name:
// "TLS handshake with 127.0.0.1:4433 failed: certificate verify failed:
// certificate has expired (verifying host name "localhost")".
class FIBERLOOP_API SslCertVerificationError : public SslError {
 public:
  SslCertVerificationError(const std::string& what, long verify_code, std::string verify_message);
  // verify_code() is OpenSSL's X509_V_ERR_* value, verify_message() its text.
  long verify_code() const noexcept { return verify_code_; }
  const std::string& verify_message() const noexcept { return verify_message_; }

 private:
  long verify_code_;
  std::string verify_message_;
};

// TlsVersion is a protocol version, for the lowest a context accepts.
enum class TlsVersion { tls1_2, tls1_3 };

// Verify is how a peer's certificate is checked (Python's ssl.CERT_*):
// none: not asked for or not checked; optional (servers): asked for and
// checked if sent; required: the handshake fails without a valid one.
enum class Verify { none, optional, required };

// SslContext is the configuration TLS connections are made with, as Python's
// ssl.SSLContext: a cheap handle, copies share one OpenSSL SSL_CTX. Configure
// it before the first connection uses it; from then on it may be shared by
// every connection and every loop of a LoopGroup (OpenSSL locks what it must).
// Every setter throws SslError with OpenSSL's reason when OpenSSL refuses
// (a missing file, a key that does not match its certificate...).
//
//   auto ctx = fiberloop::net::SslContext::client();  // verifies, system CAs
//   auto [r, w] = fiberloop::net::open_connection("example.com", 443, {.ssl = ctx});
//
//   auto server_ctx = fiberloop::net::SslContext::server("cert.pem", "key.pem");
//   fiberloop::net::start_server(handler, "0.0.0.0", 443, {.ssl = server_ctx});
class FIBERLOOP_API SslContext {
 public:
  // An empty handle: a connection given one is plain TCP.
  SslContext() = default;

  // client() is Python's ssl.create_default_context(): the peer's
  // certificate is verified (Verify::required) against the system's CA store
  // (Debian's ca-certificates, /etc/ssl/certs), and so is its host name;
  // TLS 1.2 or later; no renegotiation, no compression.
  static SslContext client();
  // client(cafile) is the same trusting the CAs of cafile only, not the
  // system's (Python's create_default_context(cafile=...)).
  static SslContext client(const std::string& cafile);
  // server(certfile, keyfile) is a server context with that certificate
  // chain (PEM; the key in certfile when keyfile is empty); TLS 1.2 or
  // later; no client certificate asked for (Verify::none).
  static SslContext server(const std::string& certfile, const std::string& keyfile = "");

  explicit operator bool() const noexcept { return state_ != nullptr; }
  bool is_server() const;

  // load_verify_locations(cafile, capath) trusts the CAs in cafile (PEM)
  // and/or the hashed directory capath, besides any loaded before.
  void load_verify_locations(const std::string& cafile, const std::string& capath = "");
  // load_default_verify_paths() trusts the system's CA store (client() does).
  void load_default_verify_paths();
  // load_cert_chain(certfile, keyfile) is this side's certificate chain and
  // key: a server's, or a client's for servers that ask for one.
  void load_cert_chain(const std::string& certfile, const std::string& keyfile = "");
  // set_verify_mode(mode): how the peer's certificate is checked. Turning a
  // client's to Verify::none also turns off the host name check (Python
  // refuses that order; here it is one call that says what it does).
  void set_verify_mode(Verify mode);
  Verify verify_mode() const;
  // set_check_hostname(on): a client checks that the certificate names the
  // host it connects to (server_hostname). On by client(). Turning it on
  // also sets Verify::required.
  void set_check_hostname(bool on);
  bool check_hostname() const;
  // set_alpn_protocols({"h2", "http/1.1"}): offered by a client in this
  // order; a server picks the first of its own that the client offers. Each
  // name 1..255 bytes (std::invalid_argument otherwise).
  void set_alpn_protocols(const std::vector<std::string>& protocols);
  // set_minimum_version(v): the lowest protocol version accepted.
  void set_minimum_version(TlsVersion version);
  // set_ciphers(list): the TLS 1.2 cipher list, in OpenSSL's syntax.
  void set_ciphers(const std::string& list);
  // set_servername_callback(fn) (servers): fn(name) is called during each
  // handshake with the host name the client asked for (SNI; "" if none)
  // and returns the context to go on with (its certificate), or an empty
  // SslContext to keep this one. An exception from fn fails that handshake
  // only.
  using ServerNameCallback = std::function<SslContext(std::string_view server_name)>;
  void set_servername_callback(ServerNameCallback fn);

  // native_handle() is the SSL_CTX, for what this class does not cover.
  SSL_CTX* native_handle() const;

  struct State;

 private:
  explicit SslContext(std::shared_ptr<State> s) : state_(std::move(s)) {}
  State& need() const;
  std::shared_ptr<State> state_;
};

// TlsInfo is what a TLS connection reports about itself
// (StreamWriter::tls(), asyncio's get_extra_info("ssl_object") and
// "peercert").
struct TlsInfo {
  std::string version;        // "TLSv1.3"
  std::string cipher;         // "TLS_AES_256_GCM_SHA384"
  std::string alpn_protocol;  // the protocol agreed on, "" if none
  std::string server_name;    // the SNI name the client sent, "" if none
  std::string peer_subject;   // the peer certificate's subject, "" if it sent none
  bool peer_verified = false;  // the peer sent a certificate and it was verified
  // truncated: the peer ended the stream without a close_notify. The
  // reader saw an ordinary end of stream (as asyncio's); a protocol that
  // has no length framing of its own may have lost its tail to an attacker.
  bool truncated = false;
  SSL* native_handle = nullptr;  // valid while the connection is open
};

}  // namespace fiberloop::net
