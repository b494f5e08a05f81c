#pragma once

// The idle half of http::Client's connection pool: keep-alive connections waiting for
// their next request, per destination. Private to the client (not installed).
//
// Threading: like the Client that owns it, used only from the Client's executor.

#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>

#include "coromesh/http/tls.hpp"

namespace coromesh::http::detail {

// One client connection: plain TCP, or TLS over it. The request code is a template over
// the two stream types (chosen once per call, not per read or write), so the plain path
// pays nothing for TLS.
struct ClientConnection {
  using Tls = boost::beast::ssl_stream<boost::beast::tcp_stream>;

  explicit ClientConnection(boost::beast::tcp_stream tcp) : stream(std::move(tcp)) {}
  ClientConnection(boost::beast::tcp_stream tcp, std::shared_ptr<TlsContext> tls_context)
      : context(std::move(tls_context)),
        stream(std::in_place_type<Tls>, std::move(tcp), *context) {}

  // The socket with its deadline, under any TLS layer.
  boost::beast::tcp_stream& tcp() {
    return std::visit(
        [](auto& s) -> boost::beast::tcp_stream& { return boost::beast::get_lowest_layer(s); },
        stream);
  }

  // Declared first so it is destroyed last: the TLS session was made from it.
  std::shared_ptr<TlsContext> context;
  std::variant<boost::beast::tcp_stream, Tls> stream;
};

class ClientPool {
 public:
  using Clock = std::chrono::steady_clock;

  ClientPool(std::size_t max_idle_per_destination, std::chrono::milliseconds idle_timeout)
      : max_idle_(max_idle_per_destination), idle_timeout_(idle_timeout) {}

  // The most recently used live connection to `key`, if any. Connections idle for longer
  // than the idle timeout, or that the peer has closed meanwhile, are dropped on the way.
  std::optional<ClientConnection> take(const std::string& key, Clock::time_point now);

  // Parks a connection whose last exchange left it reusable. Beyond the per-destination
  // limit the oldest idle connection is closed: the newest are the likeliest to be alive.
  void put(const std::string& key, ClientConnection connection, Clock::time_point now);

  std::size_t size() const noexcept { return size_; }
  std::size_t size_of(const std::string& key) const noexcept {
    const auto it = idle_.find(key);
    return it == idle_.end() ? 0 : it->second.size();
  }
  void clear();
  // Closes and forgets the idle connections to `key`.
  void clear(const std::string& key);

 private:
  struct Idle {
    ClientConnection connection;
    Clock::time_point since;
  };

  void drop_expired(std::deque<Idle>& list, Clock::time_point now);

  std::size_t max_idle_;
  std::chrono::milliseconds idle_timeout_;
  // Per "host:port" (plus the TLS pool key for TLS); each list is oldest first, so take() pops the
  // back (LIFO).
  std::unordered_map<std::string, std::deque<Idle>> idle_;
  std::size_t size_ = 0;
};

}  // namespace coromesh::http::detail
