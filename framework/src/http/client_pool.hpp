#pragma once

// The idle half of http::Client's connection pool: keep-alive connections waiting for
// their next request, per destination. Private to the client (not installed).
//
// Threading: like the Client that owns it, used only from the Client's executor.

#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>

namespace coromesh::http::detail {

class ClientPool {
 public:
  using Clock = std::chrono::steady_clock;

  ClientPool(std::size_t max_idle_per_destination, std::chrono::milliseconds idle_timeout)
      : max_idle_(max_idle_per_destination), idle_timeout_(idle_timeout) {}

  // The most recently used live connection to `key`, if any. Connections idle for longer
  // than the idle timeout, or that the peer has closed meanwhile, are dropped on the way.
  std::optional<boost::beast::tcp_stream> take(const std::string& key, Clock::time_point now);

  // Parks a connection whose last exchange left it reusable. Beyond the per-destination
  // limit the oldest idle connection is closed: the newest are the likeliest to be alive.
  void put(const std::string& key, boost::beast::tcp_stream stream, Clock::time_point now);

  std::size_t size() const noexcept { return size_; }
  void clear();

 private:
  struct Idle {
    boost::beast::tcp_stream stream;
    Clock::time_point since;
  };

  void drop_expired(std::deque<Idle>& list, Clock::time_point now);

  std::size_t max_idle_;
  std::chrono::milliseconds idle_timeout_;
  // Per "host:port"; each list is oldest first, so take() pops the back (LIFO).
  std::unordered_map<std::string, std::deque<Idle>> idle_;
  std::size_t size_ = 0;
};

}  // namespace coromesh::http::detail
