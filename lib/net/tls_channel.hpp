// lib/net/tls_channel.hpp: one connection's TLS session over its socket (private).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "fiberloop/net/socket.hpp"
#include "fiberloop/net/tls.hpp"

typedef struct bio_st BIO;

namespace fiberloop::net::detail {

// take_openssl_reason() is the reason of the earliest error in this
// thread's OpenSSL error queue ("" if none), and empties the queue.
std::string take_openssl_reason();

// TlsChannel is an OpenSSL session whose records go straight between its
// own BIO and the socket's fd: send(MSG_NOSIGNAL) and recv, no intermediate
// memory BIO and no copy (docs/tls.md says why). OpenSSL never blocks: a
// call that needs the socket says so and the caller waits on the loop.
//
// One task reads and one (the writer or the background flush) writes at a
// time, which OpenSSL allows on one SSL object from one thread.
class TlsChannel {
 public:
  // TlsChannel(ctx, sock, hostname) prepares the session of a client (SNI
  // and the host name check from hostname) or, for a server context, of a
  // server. `early` is plaintext the stream had already read that is really
  // the peer's first TLS bytes (start_tls); the BIO hands it out first.
  TlsChannel(const SslContext& ctx, Socket& sock, const std::string& hostname, std::string early);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  // handshake() runs the handshake to its end, waiting on the loop. Throws
  // SslCertVerificationError, SslError, std::system_error ECONNRESET (the
  // peer closed), or what a wait throws (CancelledError, EBADF once the
  // socket was closed under it).
  void handshake();
  // recv(buf, len): decrypted bytes (> 0), waiting for a record as needed;
  // 0 at the end of the stream (close_notify, or the peer's plain EOF: then
  // truncated() is true). Throws SslError / std::system_error.
  std::size_t recv(void* buf, std::size_t len);
  // send(data): how much of data went out now (0 if the socket is full;
  // the caller waits writable and calls again with the same bytes first).
  std::size_t send(std::string_view data);
  // close_notify() sends this side's close_notify if the socket takes it
  // now, and drops what has arrived unread; it does not wait for the peer's.
  void close_notify() noexcept;
  // detach() forgets the socket: it is being closed.
  void detach() noexcept { sock_ = nullptr; }

  bool truncated() const noexcept { return truncated_; }
  bool established() const noexcept { return established_; }
  TlsInfo info() const;

  // keep(ctx): the context an SNI callback switched this session to
  // lives as long as the session.
  void keep(SslContext ctx) { chosen_ = std::move(ctx); }

  // The BIO's side, called back by OpenSSL.
  int bio_read(BIO* bio, char* buf, int len) noexcept;
  int bio_write(BIO* bio, const char* buf, int len) noexcept;

 private:
  // fail(what, ret) is the exception for an OpenSSL call's failure.
  [[noreturn]] void fail(const char* what, int ret);
  std::string peer_name() const;

  SslContext ctx_;  // keeps the SSL_CTX (and an SNI callback's) alive
  SslContext chosen_;
  SSL* ssl_ = nullptr;
  Socket* sock_;
  std::string hostname_;
  std::string early_;
  std::size_t early_pos_ = 0;
  int last_errno_ = 0;   // the errno of the BIO's last failed system call
  bool peer_eof_ = false;  // the BIO's recv returned 0
  bool drained_ = false;   // the BIO's last recv came back short
  bool truncated_ = false;
  bool established_ = false;
  bool failed_ = false;  // OpenSSL reported a fatal error: no close_notify then
  bool server_;
};

}  // namespace fiberloop::net::detail
