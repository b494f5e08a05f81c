#include "pump.hpp"

#include <prometheus/counter.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>
#include <memory>
#include <tuple>
#include <type_traits>

namespace coromesh::sidecar {

namespace asio = boost::asio;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

bool is_end_of_stream(const boost::system::error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

void half_close(TcpSocket& socket) {
  boost::system::error_code ignored;
  socket.shutdown(TcpSocket::shutdown_send, ignored);  // the peer may be gone already
}

void half_close(TlsStream& stream) {
  stream.shutdown_send();
}

void count(prometheus::Counter* bytes, std::uint64_t& pending) {
  if (bytes != nullptr && pending > 0) {
    bytes->Increment(static_cast<double>(pending));
  }
  pending = 0;
}

}  // namespace

TcpSocket& lowest_layer(TcpSocket& socket) {
  return socket;
}
TcpSocket& lowest_layer(TlsStream& stream) {
  return stream.next_layer();
}

void set_no_delay(TcpSocket& socket) {
  boost::system::error_code ignored;  // a socket reset already fails its first read
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
}

namespace {

std::atomic<std::size_t> buffers_held{0};

// One pump's buffer, counted while held.
class PumpBuffer {
 public:
  PumpBuffer() = default;
  PumpBuffer(const PumpBuffer&) = delete;
  PumpBuffer& operator=(const PumpBuffer&) = delete;
  ~PumpBuffer() { release(); }

  std::span<std::byte> get() {
    if (!bytes_) {
      bytes_ = std::make_unique_for_overwrite<std::byte[]>(kPumpBuffer);
      buffers_held.fetch_add(1, std::memory_order_relaxed);
    }
    return {bytes_.get(), kPumpBuffer};
  }
  void release() noexcept {
    if (bytes_) {
      bytes_.reset();
      buffers_held.fetch_sub(1, std::memory_order_relaxed);
    }
  }

 private:
  std::unique_ptr<std::byte[]> bytes_;
};

asio::awaitable<boost::system::error_code> wait_until_readable(TcpSocket& socket) {
  // A wait re-arms the descriptor (epoll_ctl MOD): bytes already there are reported at
  // once, so nothing that arrived while the last write was in flight is missed.
  auto [ec] = co_await socket.async_wait(TcpSocket::wait_read, use_tuple);
  co_return ec;
}

asio::awaitable<boost::system::error_code> wait_until_readable(TlsStream& stream) {
  return stream.wait_until_readable();
}

}  // namespace

std::size_t pump_buffers_held() noexcept {
  return buffers_held.load(std::memory_order_relaxed);
}

template <class From, class To>
asio::awaitable<void> pump(From& from, To& to, Activity& activity, prometheus::Counter* counter) {
  std::uint64_t uncounted = 0;
  PumpBuffer buffer;
  // Until the first read, and after each read shorter than the buffer (the source had no
  // more), the pump waits for the source holding no buffer.
  bool wait_first = true;
  for (;;) {
    boost::system::error_code read_error;
    std::size_t n = 0;
    if (wait_first) {
      buffer.release();
      read_error = co_await wait_until_readable(from);
    }
    std::span<std::byte> bytes;
    if (!read_error) {
      bytes = buffer.get();
      if constexpr (std::is_same_v<From, TlsStream>) {
        std::tie(read_error, n) = co_await from.read_some(bytes);
      } else {
        std::tie(read_error, n) =
            co_await from.async_read_some(asio::buffer(bytes.data(), bytes.size()), use_tuple);
      }
      wait_first = n < bytes.size();
    }
    if (n > 0) {
      activity.last = std::chrono::steady_clock::now();
      boost::system::error_code write_error;
      std::size_t written = 0;
      if constexpr (std::is_same_v<To, TlsStream>) {
        std::tie(write_error, written) = co_await to.write_all(bytes.first(n));
      } else {
        std::tie(write_error, written) =
            co_await asio::async_write(to, asio::buffer(bytes.data(), n), use_tuple);
      }
      uncounted += written;
      if (write_error) {
        count(counter, uncounted);
        throw boost::system::system_error(write_error);
      }
      if (uncounted >= kCountChunk) {
        count(counter, uncounted);
      }
    }
    if (read_error) {
      count(counter, uncounted);
      if (is_end_of_stream(read_error)) {
        half_close(to);
        co_return;
      }
      throw boost::system::system_error(read_error);
    }
  }
}

namespace {

// The two pumps; I/O errors end them quietly (`||` below waits for a success, so a
// failure must not escape, or the idle watch would hold the connection open).
template <class Client, class Server>
asio::awaitable<void> both_ways(Client& client, Server& server, Activity& activity,
                                prometheus::Counter* from_client, prometheus::Counter* to_client) {
  using namespace asio::experimental::awaitable_operators;
  try {
    co_await (pump(client, server, activity, from_client) &&
              pump(server, client, activity, to_client));
  } catch (const std::exception&) {
    // Reset, aborted, cancelled — or both pumps failed at once, which `&&` reports as
    // asio::multiple_exceptions, not a system_error: the connection is over either way.
  }
}

}  // namespace

template <class Client, class Server>
asio::awaitable<void> splice(Client& client, Server& server, std::chrono::nanoseconds idle,
                             prometheus::Counter* from_client, prometheus::Counter* to_client) {
  using namespace asio::experimental::awaitable_operators;
  Activity activity;
  co_await (both_ways(client, server, activity, from_client, to_client) ||
            idle_watch(activity, idle));
}

template asio::awaitable<void> splice(TlsStream&, TcpSocket&, std::chrono::nanoseconds,
                                      prometheus::Counter*, prometheus::Counter*);
template asio::awaitable<void> splice(TcpSocket&, TlsStream&, std::chrono::nanoseconds,
                                      prometheus::Counter*, prometheus::Counter*);
template asio::awaitable<void> splice(TcpSocket&, TcpSocket&, std::chrono::nanoseconds,
                                      prometheus::Counter*, prometheus::Counter*);

asio::awaitable<void> idle_watch(const Activity& activity, std::chrono::nanoseconds idle) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    const auto due = activity.last + idle;
    if (std::chrono::steady_clock::now() >= due) {
      co_return;
    }
    timer.expires_at(due);
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) {
      co_return;  // cancelled: the pumps ended first
    }
  }
}

}  // namespace coromesh::sidecar
