// ssl_context.cpp: SslContext over OpenSSL's SSL_CTX, and the TLS errors.
#include "fiberloop/net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tls_channel.hpp"

namespace fiberloop::net {

SslError::SslError(const std::string& what, std::string reason)
    : std::system_error(EPROTO, std::generic_category(), what), what_(what), reason_(std::move(reason)) {}

SslCertVerificationError::SslCertVerificationError(const std::string& what, long verify_code,
                                                   std::string verify_message)
    : SslError(what, "certificate verify failed"),
      verify_code_(verify_code),
      verify_message_(std::move(verify_message)) {}

namespace detail {

std::string take_openssl_reason() {
  // The earliest error is the cause; later ones are its consequences.
  unsigned long first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "";
  // A system call's failure (a certificate file that is not there) is an
  // errno: its text, not "error:80000002:system library::...".
  if (ERR_GET_LIB(first) == ERR_LIB_SYS) return std::strerror(ERR_GET_REASON(first));
  if (const char* reason = ERR_reason_error_string(first)) return reason;
  char text[256];
  ERR_error_string_n(first, text, sizeof text);
  return text;
}

}  // namespace detail

struct SslContext::State {
  SSL_CTX* ctx = nullptr;
  bool server = false;
  bool check_hostname = false;
  ServerNameCallback servername;
  std::vector<unsigned char> alpn;  // wire format: a length byte before each name

  ~State() { SSL_CTX_free(ctx); }
};

namespace {

[[noreturn]] void refuse(const std::string& what) {
  std::string reason = detail::take_openssl_reason();
  throw SslError(what + ": " + (reason.empty() ? "refused by OpenSSL" : reason), reason);
}

// OpenSSL fills a certificate's extension cache (its key identifiers and
// purpose flags) on first use, and two threads that verify against the
// same certificate for the first time at once can both write it while the
// other reads it (openssl/openssl#25202, #32609; TSan caught it in
// tls_test's two loops sharing two contexts). A context is configured on
// one thread before it is shared, so the certificates it holds get their
// cache here. Certificates a CA directory yields on lookup are not loaded
// yet and stay exposed to OpenSSL's race.
void cache_certificate_extensions(SSL_CTX* ctx) {
  if (X509_STORE* store = SSL_CTX_get_cert_store(ctx)) {
    STACK_OF(X509_OBJECT)* objects = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objects); ++i) {
      if (X509* cert = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i)))
        X509_get_extension_flags(cert);
    }
  }
  if (X509* own = SSL_CTX_get0_certificate(ctx)) X509_get_extension_flags(own);
  STACK_OF(X509)* chain = nullptr;
  if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain) {
    for (int i = 0; i < sk_X509_num(chain); ++i) X509_get_extension_flags(sk_X509_value(chain, i));
  }
}

std::shared_ptr<SslContext::State> make_state(bool server) {
  auto s = std::make_shared<SslContext::State>();
  ERR_clear_error();
  s->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!s->ctx) refuse("SslContext");
  s->server = server;
  SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(s->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                  (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  // A write may return after each record (a partial write), and be retried
  // from a buffer that moved: the stream's write buffer grows and slides.
  SSL_CTX_set_mode(s->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read what the socket has, not a record header and then its body: one
  // recv per batch of records instead of two per record.
  SSL_CTX_set_read_ahead(s->ctx, 1);
  if (server) {
    static const unsigned char kSessionContext[] = "fiberloop";
    SSL_CTX_set_session_id_context(s->ctx, kSessionContext, sizeof kSessionContext - 1);
  }
  return s;
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
  auto* state = static_cast<SslContext::State*>(arg);
  if (state->alpn.empty()) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, state->alpn.data(),
                            static_cast<unsigned>(state->alpn.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;  // no protocol in common: go on without one
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

int choose_by_servername(SSL* ssl, int* alert, void* arg) {
  auto* state = static_cast<SslContext::State*>(arg);
  auto* channel = static_cast<detail::TlsChannel*>(SSL_get_app_data(ssl));
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  try {
    SslContext chosen = state->servername(name ? name : "");
    if (!chosen) return SSL_TLSEXT_ERR_OK;
    if (!chosen.is_server()) throw std::invalid_argument("not a server context");
    if (!SSL_set_SSL_CTX(ssl, chosen.native_handle())) return SSL_TLSEXT_ERR_ALERT_FATAL;
    if (channel) channel->keep(std::move(chosen));
    return SSL_TLSEXT_ERR_OK;
  } catch (...) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
}

}  // namespace

SslContext SslContext::client() {
  SslContext c(make_state(false));
  c.load_default_verify_paths();
  c.set_check_hostname(true);
  return c;
}

SslContext SslContext::client(const std::string& cafile) {
  SslContext c(make_state(false));
  c.load_verify_locations(cafile);
  c.set_check_hostname(true);
  return c;
}

SslContext SslContext::server(const std::string& certfile, const std::string& keyfile) {
  SslContext c(make_state(true));
  c.load_cert_chain(certfile, keyfile);
  return c;
}

SslContext::State& SslContext::need() const {
  if (!state_) throw std::invalid_argument("SslContext: the context is empty");
  return *state_;
}

bool SslContext::is_server() const { return need().server; }
SSL_CTX* SslContext::native_handle() const { return need().ctx; }

void SslContext::load_verify_locations(const std::string& cafile, const std::string& capath) {
  State& s = need();
  if (cafile.empty() && capath.empty())
    throw std::invalid_argument("load_verify_locations(): neither a CA file nor a directory");
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(s.ctx, cafile.empty() ? nullptr : cafile.c_str(),
                                    capath.empty() ? nullptr : capath.c_str()) != 1)
    refuse("load_verify_locations(\"" + cafile + "\", \"" + capath + "\")");
  cache_certificate_extensions(s.ctx);
}

void SslContext::load_default_verify_paths() {
  ERR_clear_error();
  if (SSL_CTX_set_default_verify_paths(need().ctx) != 1) refuse("load_default_verify_paths()");
  cache_certificate_extensions(need().ctx);
}

void SslContext::load_cert_chain(const std::string& certfile, const std::string& keyfile) {
  State& s = need();
  const std::string& key = keyfile.empty() ? certfile : keyfile;
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(s.ctx, certfile.c_str()) != 1)
    refuse("load_cert_chain(): the certificate chain \"" + certfile + "\"");
  if (SSL_CTX_use_PrivateKey_file(s.ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
    refuse("load_cert_chain(): the key \"" + key + "\"");
  if (SSL_CTX_check_private_key(s.ctx) != 1)
    refuse("load_cert_chain(): the key \"" + key + "\" does not match \"" + certfile + "\"");
  cache_certificate_extensions(s.ctx);
}

void SslContext::set_verify_mode(Verify mode) {
  State& s = need();
  int flags = SSL_VERIFY_NONE;
  if (mode != Verify::none) flags = SSL_VERIFY_PEER;
  if (mode == Verify::required && s.server) flags |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(s.ctx, flags, nullptr);
  if (mode == Verify::none) s.check_hostname = false;
}

Verify SslContext::verify_mode() const {
  int flags = SSL_CTX_get_verify_mode(need().ctx);
  if (!(flags & SSL_VERIFY_PEER)) return Verify::none;
  if (flags & SSL_VERIFY_FAIL_IF_NO_PEER_CERT) return Verify::required;
  return need().server ? Verify::optional : Verify::required;
}

void SslContext::set_check_hostname(bool on) {
  State& s = need();
  if (on && s.server)
    throw std::invalid_argument("set_check_hostname(): a server does not check host names");
  if (on) set_verify_mode(Verify::required);
  s.check_hostname = on;
}

bool SslContext::check_hostname() const { return need().check_hostname; }

void SslContext::set_alpn_protocols(const std::vector<std::string>& protocols) {
  State& s = need();
  std::vector<unsigned char> wire;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255)
      throw std::invalid_argument("set_alpn_protocols(): a protocol name must be 1..255 bytes, not " +
                                  std::to_string(p.size()));
    wire.push_back(static_cast<unsigned char>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  if (wire.size() > 65535)
    throw std::invalid_argument("set_alpn_protocols(): the list is over 65,535 bytes");
  s.alpn = std::move(wire);
  if (s.server) {
    SSL_CTX_set_alpn_select_cb(s.ctx, select_alpn, &s);
  } else if (SSL_CTX_set_alpn_protos(s.ctx, s.alpn.data(), static_cast<unsigned>(s.alpn.size())) != 0) {
    refuse("set_alpn_protocols()");
  }
}

void SslContext::set_minimum_version(TlsVersion version) {
  int v = version == TlsVersion::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (SSL_CTX_set_min_proto_version(need().ctx, v) != 1) refuse("set_minimum_version()");
}

void SslContext::set_ciphers(const std::string& list) {
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(need().ctx, list.c_str()) != 1)
    refuse("set_ciphers(\"" + list + "\")");
}

void SslContext::set_servername_callback(ServerNameCallback fn) {
  State& s = need();
  if (!s.server)
    throw std::invalid_argument("set_servername_callback(): only a server context chooses by SNI");
  s.servername = std::move(fn);
  if (s.servername) {
    SSL_CTX_set_tlsext_servername_callback(s.ctx, choose_by_servername);
    SSL_CTX_set_tlsext_servername_arg(s.ctx, &s);
  } else {
    SSL_CTX_set_tlsext_servername_callback(s.ctx, nullptr);
  }
}

}  // namespace fiberloop::net
