#pragma once

// The idle half of http::Client's connection pool: keep-alive connections waiting for
// their next request, per destination. Private to the client (not installed).
//
// Threading: like the Client that owns it, used only from the Client's executor.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>

#include "coromesh/http/tls.hpp"

namespace coromesh::http::detail {

// The memory one client connection reuses from call to call: the request as written, and
// the read buffer the response is parsed from (empty between calls).
struct ClientBuffers {
  // Beyond this a buffer is given back after the call: a connection parked after one
  // large exchange must not keep its memory while idle.
  static constexpr std::size_t kKeptCapacity = 16 * 1024;
  // The most of a response held unparsed at once. A valid one never needs more than its
  // header (limited to 64 KiB) and one 64 KiB read; Beast's parser takes body bytes as
  // they come but bounds neither a chunk-size line nor the trailers, which a callee could
  // otherwise stretch until the deadline, all of it in memory. Reading past this fails
  // with buffer_overflow.
  static constexpr std::size_t kReadLimit = 128 * 1024;

  std::string write;
  boost::beast::flat_buffer read{kReadLimit};

  void release_if_large() {
    if (write.capacity() > kKeptCapacity) {
      std::string().swap(write);
    }
    if (read.capacity() > kKeptCapacity && read.size() == 0) {
      read.shrink_to_fit();
    }
  }
};

// The deadline of one call on a connection: one timer armed per call, where the stream's
// own deadline (beast::tcp_stream::expires_at) arms and cancels a timer around every read
// and write. When it fires the call's socket is closed, as tcp_stream does: the pending
// operation ends with operation_aborted and any later one at once, and fired() tells
// that it was the deadline, not the caller cancelling. The timer's state is shared with
// its handler (weakly): a connection closed while the handler is queued is not touched.
class CallDeadline {
 public:
  explicit CallDeadline(const boost::asio::any_io_executor& executor)
      : state_(std::make_shared<State>(executor)) {}

  // `socket`: the one under the call's streams, where it is for this call (moving a
  // beast::tcp_stream moves its socket to a new place).
  void arm(boost::asio::ip::tcp::socket& socket, std::chrono::steady_clock::time_point deadline) {
    state_->socket = &socket;
    state_->fired = false;
    state_->timer.expires_at(deadline);
    state_->timer.async_wait([weak = std::weak_ptr<State>(state_),
                              call = ++state_->calls](const boost::system::error_code& ec) {
      const auto state = weak.lock();
      // Disarmed; the connection is gone; or the timer expired as its call ended and
      // this handler was already queued when disarm() came: not this call's deadline.
      if (ec || !state || state->calls != call) {
        return;
      }
      state->fired = true;
      boost::system::error_code ignored;
      state->socket->close(ignored);
    });
  }
  void disarm() {
    ++state_->calls;
    state_->socket = nullptr;
    state_->timer.cancel();
  }
  bool fired() const noexcept { return state_->fired; }

 private:
  struct State {
    explicit State(const boost::asio::any_io_executor& executor) : timer(executor) {}
    boost::asio::steady_timer timer;
    boost::asio::ip::tcp::socket* socket = nullptr;  // while a call is armed
    std::uint64_t calls = 0;                         // arm() and disarm() each end the call before
    bool fired = false;
  };
  std::shared_ptr<State> state_;
};

// One client connection: plain TCP, or TLS over it. The request code is a template over
// the two stream types (chosen once per call, not per read or write), so the plain path
// pays nothing for TLS.
struct ClientConnection {
  using Tls = boost::beast::ssl_stream<boost::beast::tcp_stream>;

  explicit ClientConnection(boost::beast::tcp_stream tcp)
      : stream(std::move(tcp)), deadline(this->tcp().get_executor()) {}
  ClientConnection(boost::beast::tcp_stream tcp, std::shared_ptr<TlsContext> tls_context)
      : context(std::move(tls_context)),
        stream(std::in_place_type<Tls>, std::move(tcp), *context),
        deadline(this->tcp().get_executor()) {}

  // The socket with its deadline, under any TLS layer.
  boost::beast::tcp_stream& tcp() {
    return std::visit(
        [](auto& s) -> boost::beast::tcp_stream& { return boost::beast::get_lowest_layer(s); },
        stream);
  }

  // Declared first so it is destroyed last: the TLS session was made from it.
  std::shared_ptr<TlsContext> context;
  std::variant<boost::beast::tcp_stream, Tls> stream;
  ClientBuffers buffers;
  CallDeadline deadline;  // of each exchange (the connect and the handshake: the stream's)
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
