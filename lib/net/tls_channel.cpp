// tls_channel.cpp: a TLS session over a non-blocking socket, its records
// moved by a BIO of our own on the fd.
#include "tls_channel.hpp"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "fiberloop/await.hpp"
#include "fiberloop/errors.hpp"
#include "fiberloop/poller.hpp"

namespace fiberloop::net::detail {

namespace {

TlsChannel* channel_of(BIO* bio) { return static_cast<TlsChannel*>(BIO_get_data(bio)); }

int read_trampoline(BIO* bio, char* buf, int len) { return channel_of(bio)->bio_read(bio, buf, len); }
int write_trampoline(BIO* bio, const char* buf, int len) {
  return channel_of(bio)->bio_write(bio, buf, len);
}
long ctrl_trampoline(BIO*, int cmd, long, void*) {
  // The socket has no user-space buffer: a flush has nothing to do.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

// The fd BIO OpenSSL ships writes with write(2): a peer gone would raise
// SIGPIPE. Ours sends with MSG_NOSIGNAL, as every fiberloop send does, and
// hands out start_tls's already-read bytes before reading the socket.
BIO_METHOD* socket_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "fiberloop socket");
    if (!m) throw std::bad_alloc();
    BIO_meth_set_read(m, read_trampoline);
    BIO_meth_set_write(m, write_trampoline);
    BIO_meth_set_ctrl(m, ctrl_trampoline);
    return m;
  }();
  return method;
}

bool is_ip_address(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

TlsChannel::TlsChannel(const SslContext& ctx, Socket& sock, const std::string& hostname,
                       std::string early)
    : ctx_(ctx), sock_(&sock), hostname_(hostname), early_(std::move(early)), server_(ctx.is_server()) {
  if (!server_ && ctx.check_hostname() && hostname_.empty())
    throw std::invalid_argument(
        "TLS: the context checks host names, and no server_hostname was given to check");
  if (hostname_.find('\0') != std::string::npos)
    throw std::invalid_argument("TLS: server_hostname holds a NUL byte");
  ERR_clear_error();
  ssl_ = SSL_new(ctx.native_handle());
  if (!ssl_) throw SslError("TLS: SSL_new failed: " + take_openssl_reason(), "SSL_new");
  BIO* bio = BIO_new(socket_method());
  if (!bio) {
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);
  SSL_set_app_data(ssl_, this);
  if (server_) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  if (hostname_.empty()) return;
  bool ip = is_ip_address(hostname_);
  // RFC 6066: SNI carries host names only, never an address.
  bool ok = ip || SSL_set_tlsext_host_name(ssl_, hostname_.c_str()) == 1;
  if (ok && ctx.check_hostname()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, hostname_.c_str()) == 1
            : X509_VERIFY_PARAM_set1_host(param, hostname_.c_str(), hostname_.size()) == 1;
  }
  if (!ok) {
    SSL_free(ssl_);
    throw std::invalid_argument("TLS: server_hostname \"" + hostname_ + "\" is refused by OpenSSL");
  }
}

TlsChannel::~TlsChannel() { SSL_free(ssl_); }

int TlsChannel::bio_read(BIO* bio, char* buf, int len) noexcept {
  BIO_clear_retry_flags(bio);
  if (early_pos_ < early_.size()) {
    std::size_t n = std::min(early_.size() - early_pos_, static_cast<std::size_t>(len));
    std::memcpy(buf, early_.data() + early_pos_, n);
    early_pos_ += n;
    if (early_pos_ == early_.size()) std::string().swap(early_);
    return static_cast<int>(n);
  }
  if (!sock_ || !*sock_) {
    last_errno_ = EBADF;
    return -1;
  }
  if (drained_) {
    // The last recv came back short: the kernel had nothing more then, and
    // a recv now would most likely say EAGAIN. Wait for readiness first (an
    // edge that came meanwhile ends that wait at once).
    drained_ = false;
    BIO_set_retry_read(bio);
    return -1;
  }
  ssize_t n = ::recv(sock_->fd(), buf, static_cast<std::size_t>(len), 0);
  if (n > 0) {
    drained_ = n < len;
    return static_cast<int>(n);
  }
  if (n == 0) {
    peer_eof_ = true;
    return 0;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_read(bio);
  } else {
    last_errno_ = errno;
  }
  return -1;
}

int TlsChannel::bio_write(BIO* bio, const char* buf, int len) noexcept {
  BIO_clear_retry_flags(bio);
  if (!sock_ || !*sock_) {
    last_errno_ = EBADF;
    return -1;
  }
  ssize_t n = ::send(sock_->fd(), buf, static_cast<std::size_t>(len), MSG_NOSIGNAL);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_write(bio);
  } else {
    last_errno_ = errno;
  }
  return -1;
}

std::string TlsChannel::peer_name() const {
  if (!sock_) return "a closed socket";
  Address a = sock_->peer();
  if (a.family() == AF_UNSPEC && *sock_) {
    try {
      a = sock_->getpeername();
    } catch (const std::system_error&) {
      return "fd " + std::to_string(sock_->fd());
    }
  }
  return a.to_string();
}

void TlsChannel::fail(const char* what, int ret) {
  int err = SSL_get_error(ssl_, ret);
  failed_ = true;
  std::string reason = take_openssl_reason();
  std::string where = std::string("TLS ") + what + (server_ ? " from " : " with ") + peer_name();
  if (!established_) {
    long verify = SSL_get_verify_result(ssl_);
    // Only a session that checks the peer fails for its certificate: one
    // that does not (Verify::none) keeps a failed result it never acted on.
    bool checks_peer = (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0;
    if (verify != X509_V_OK && err == SSL_ERROR_SSL && checks_peer) {
      std::string message = X509_verify_cert_error_string(verify);
      std::string text = where + " failed: certificate verify failed: " + message;
      if (!server_ && !hostname_.empty() && ctx_.check_hostname())
        text += " (verifying host name \"" + hostname_ + "\")";
      throw SslCertVerificationError(text, verify, message);
    }
  }
  if (last_errno_ != 0 && (err == SSL_ERROR_SYSCALL || reason.empty()))
    throw std::system_error(last_errno_, std::generic_category(), where);
  if (peer_eof_ && !established_)
    throw std::system_error(ECONNRESET, std::generic_category(),
                            where + ": the peer closed the connection during the handshake");
  if (reason.empty()) reason = err == SSL_ERROR_SYSCALL ? "unexpected end of the stream" : "error";
  throw SslError(where + " failed: " + reason, reason);
}

void TlsChannel::handshake() {
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) {
      established_ = true;
      return;
    }
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
        sock_->wait(Poller::kReadable);
        break;
      case SSL_ERROR_WANT_WRITE:
        sock_->wait(Poller::kWritable);
        break;
      default:
        fail("handshake", r);
    }
    if (!sock_) throw std::system_error(EBADF, std::generic_category(), "TLS handshake: closed");
  }
}

std::size_t TlsChannel::recv(void* buf, std::size_t len) {
  for (;;) {
    if (!sock_)
      throw std::system_error(EBADF, std::generic_category(), "TLS recv: the connection is closed");
    ERR_clear_error();
    std::size_t n = 0;
    int r = SSL_read_ex(ssl_, buf, len, &n);
    if (r == 1) return n;
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
        sock_->wait(Poller::kReadable);
        break;
      case SSL_ERROR_WANT_WRITE:
        // Answering the peer's key update found the socket full. The writer
        // may be waiting for writability itself (a second waiter on the fd
        // is refused): then this reader gives the loop a turn instead.
        try {
          sock_->wait(Poller::kWritable);
        } catch (const RuntimeError&) {
          fiberloop::sleep(0.001);
        }
        break;
      case SSL_ERROR_ZERO_RETURN:
        return 0;  // close_notify
      default:
        if (peer_eof_ && last_errno_ == 0) {
          // The peer's plain EOF without close_notify: an end of stream, as
          // asyncio reports it, flagged for protocols that care.
          ERR_clear_error();
          truncated_ = true;
          failed_ = true;
          return 0;
        }
        fail("recv", r);
    }
  }
}

std::size_t TlsChannel::send(std::string_view data) {
  std::size_t total = 0;
  while (total < data.size()) {
    if (!sock_)
      throw std::system_error(EBADF, std::generic_category(), "TLS send: the connection is closed");
    ERR_clear_error();
    std::size_t n = 0;
    int r = SSL_write_ex(ssl_, data.data() + total, data.size() - total, &n);
    if (r == 1) {
      total += n;
      continue;
    }
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_WANT_READ) {
      // Only a renegotiation makes a write wait for a read, and contexts
      // refuse renegotiation (SSL_OP_NO_RENEGOTIATION).
      failed_ = true;
      ERR_clear_error();
      throw SslError("TLS send to " + peer_name() + " failed: the session wants to read first",
                     "write wants a read");
    }
    fail("send", r);
  }
  return total;
}

void TlsChannel::close_notify() noexcept {
  if (!established_ || failed_ || !sock_ || !*sock_) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // sent if the socket takes it now; the peer's is not awaited
  ERR_clear_error();
  // A socket closed with unread bytes makes the kernel send a reset, which
  // drops what is still queued to go out. A TLS peer always leaves some: a
  // TLS 1.3 server's session tickets, which a client that only writes never
  // reads. So what has arrived is read and dropped first (bounded: a peer
  // that keeps sending cannot hold the close).
  char scratch[16 * 1024];
  for (int i = 0; i < 64; ++i) {
    if (::recv(sock_->fd(), scratch, sizeof scratch, MSG_DONTWAIT) <= 0) break;
  }
}

TlsInfo TlsChannel::info() const {
  TlsInfo i;
  i.native_handle = ssl_;
  i.truncated = truncated_;
  if (!established_) return i;
  i.version = SSL_get_version(ssl_);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl_)) i.cipher = SSL_CIPHER_get_name(c);
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn) i.alpn_protocol.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) i.server_name = sni;
  if (X509* peer = SSL_get0_peer_certificate(ssl_)) {
    BIO* mem = BIO_new(BIO_s_mem());
    if (mem) {
      X509_NAME_print_ex(mem, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
      char* text = nullptr;
      long n = BIO_get_mem_data(mem, &text);
      if (n > 0) i.peer_subject.assign(text, static_cast<std::size_t>(n));
      BIO_free(mem);
    }
    i.peer_verified = (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) &&
                      SSL_get_verify_result(ssl_) == X509_V_OK;
  }
  return i;
}

}  // namespace fiberloop::net::detail
