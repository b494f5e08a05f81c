#pragma once

// TLS session resumption on the dialing side of Connect's mTLS: the last resumable
// session of each destination (an endpoint) is kept, and the next connection to it
// offers that session, so that the peer can skip the certificate exchange and the
// signatures (TLS 1.3: a PSK handshake, still with a fresh ECDHE key exchange).
//
//   auto stream = ...;                              // its SSL in the connect state
//   sessions->offer(ssl, endpoint.key, context);    // before the handshake
//
// Safety. A session is offered only on a connection made with the very client context
// that made it: a new leaf or new roots (a new context, certificate_source.hpp) start
// over with full handshakes, so no session outlives a rotation on this side; the server
// side's tickets are sealed with a key of its own context, so none outlives one there
// either. Nothing the peer checks is skipped: a resumed connection carries the
// certificate of the full handshake it resumes, which connect::verify_peer checks as
// ever (its identity, and that it is still within its validity period), and
// authorization is asked per connection.
//
// Sessions arrive after the handshake (TLS 1.3 sends its tickets as the first records
// after it): OpenSSL hands them to the callback that make_tls_context installs on every
// client context, which keeps them here for the connection's destination. A connection
// that was never offered through a cache keeps nothing.
//
// Threads: any; offer() and the callback take one mutex. The cache must be owned by a
// shared_ptr (connections refer to it weakly: one that outlives it keeps nothing).

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace coromesh::connect {

class TlsSessionCache : public std::enable_shared_from_this<TlsSessionCache> {
 public:
  // At most this many destinations are remembered; past it the cache starts over (the
  // endpoints of a service churn, and a forgotten one costs one full handshake).
  static constexpr std::size_t kMaxDestinations = 1024;

  TlsSessionCache() = default;
  ~TlsSessionCache();
  TlsSessionCache(const TlsSessionCache&) = delete;
  TlsSessionCache& operator=(const TlsSessionCache&) = delete;

  // Before the handshake of `ssl` (made from `context`, a client context of
  // make_tls_context): sets the session kept for `destination`, if `context` made it and
  // it is still resumable, and keeps the sessions the peer sends on this connection.
  void offer(SSL* ssl, const std::string& destination,
             const std::shared_ptr<boost::asio::ssl::context>& context);

  std::size_t size() const;

  // make_tls_context calls it for every client context: hands the sessions OpenSSL
  // makes to the cache their connection was offered through.
  static void install_on(SSL_CTX* client_context);

 private:
  struct Kept {
    std::weak_ptr<boost::asio::ssl::context> context;
    SSL_SESSION* session = nullptr;  // one reference, ours
  };
  // OpenSSL's new-session callback (install_on): 1 when the session was kept.
  static int on_new_session(SSL* ssl, SSL_SESSION* session);
  void keep(const std::string& destination, std::weak_ptr<boost::asio::ssl::context> context,
            SSL_SESSION* session);

  mutable std::mutex mutex_;
  std::unordered_map<std::string, Kept> kept_;
};

// Whether `ssl`'s handshake resumed a session (an abbreviated handshake).
bool resumed(const SSL* ssl) noexcept;

}  // namespace coromesh::connect
