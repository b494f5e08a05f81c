#include "coromesh/connect/tls_session_cache.hpp"

#include <openssl/crypto.h>

#include <ctime>
#include <utility>

namespace coromesh::connect {

namespace {

// What a connection offered through a cache carries (SSL ex_data), until SSL_free.
struct Offered {
  std::weak_ptr<TlsSessionCache> cache;
  std::string destination;
  std::weak_ptr<boost::asio::ssl::context> context;
};

void free_offered(void* /*parent*/, void* offered, CRYPTO_EX_DATA* /*data*/, int /*index*/,
                  long /*argl*/, void* /*argp*/) {
  delete static_cast<Offered*>(offered);
}

int offered_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_offered);
  return index;
}

// Resumable, and not past its lifetime (OpenSSL would not offer it; it is dropped here).
bool still_good(const SSL_SESSION* session) {
  return SSL_SESSION_is_resumable(session) == 1 &&
         SSL_SESSION_get_time(session) + SSL_SESSION_get_timeout(session) > std::time(nullptr);
}

}  // namespace

TlsSessionCache::~TlsSessionCache() {
  for (auto& [destination, kept] : kept_) {
    SSL_SESSION_free(kept.session);
  }
}

void TlsSessionCache::install_on(SSL_CTX* client_context) {
  // No store of OpenSSL's own: sessions live here, per destination.
  SSL_CTX_set_session_cache_mode(client_context,
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(client_context, &TlsSessionCache::on_new_session);
}

int TlsSessionCache::on_new_session(SSL* ssl, SSL_SESSION* session) {
  const auto* offered = static_cast<const Offered*>(SSL_get_ex_data(ssl, offered_index()));
  if (offered == nullptr || !still_good(session)) {
    return 0;  // not ours to keep: OpenSSL frees it
  }
  const auto cache = offered->cache.lock();
  if (!cache) {
    return 0;
  }
  // A copy: OpenSSL marks the connection's own session not resumable when the connection
  // ends without close_notify (a reset, a cut-off), which says nothing against a TLS 1.3
  // ticket the peer issued for later connections.
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (copy == nullptr) {
    return 0;
  }
  cache->keep(offered->destination, offered->context, copy);
  return 0;  // the connection keeps its own reference; the cache holds the copy
}

void TlsSessionCache::keep(const std::string& destination,
                           std::weak_ptr<boost::asio::ssl::context> context, SSL_SESSION* session) {
  SSL_SESSION* replaced = nullptr;
  {
    const std::lock_guard lock(mutex_);
    if (kept_.size() >= kMaxDestinations && !kept_.contains(destination)) {
      for (auto& [name, kept] : kept_) {
        SSL_SESSION_free(kept.session);
      }
      kept_.clear();
    }
    auto& kept = kept_[destination];
    replaced = std::exchange(kept.session, session);
    kept.context = std::move(context);
  }
  SSL_SESSION_free(replaced);  // null-safe
}

void TlsSessionCache::offer(SSL* ssl, const std::string& destination,
                            const std::shared_ptr<boost::asio::ssl::context>& context) {
  SSL_SESSION* session = nullptr;
  {
    const std::lock_guard lock(mutex_);
    if (auto it = kept_.find(destination); it != kept_.end()) {
      if (it->second.context.lock() == context && still_good(it->second.session)) {
        session = it->second.session;
        SSL_SESSION_up_ref(session);
      } else {
        // Made by an older context (a rotation), or spent: never offered again.
        SSL_SESSION_free(it->second.session);
        kept_.erase(it);
      }
    }
  }
  if (session != nullptr) {
    SSL_set_session(ssl, session);  // takes a reference of its own
    SSL_SESSION_free(session);
  }
  auto* offered = new Offered{weak_from_this(), destination, context};
  if (SSL_set_ex_data(ssl, offered_index(), offered) != 1) {
    delete offered;  // nothing will be kept from this connection: only a full handshake more
  }
}

std::size_t TlsSessionCache::size() const {
  const std::lock_guard lock(mutex_);
  return kept_.size();
}

bool resumed(const SSL* ssl) noexcept {
  return SSL_session_reused(ssl) == 1;
}

}  // namespace coromesh::connect
