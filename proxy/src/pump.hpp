#pragma once

// The byte pumps of an L4 connection, one per direction, run as
//
//   co_await ((pump(client, server, ...) && pump(server, client, ...)) || idle_watch(...))
//
// (Asio's proxy examples): a pump reads into its own buffer and writes all of it before
// reading again, so a slow reader on one side holds back its writer (no unbounded
// queue); it holds that buffer only while bytes are moving (kPumpBuffer). A clean end of stream
// from one side is passed on as a half-close to the other (shutdown of its send direction) and the
// other direction keeps flowing until it ends too; any error ends that pump with an exception, and
// the `&&` cancels the other one.
//
// TLS and half-close: a TLS stream is half-closed with close_notify and a FIN
// (TlsSocket::shutdown_send); a peer's FIN without close_notify is read as a clean end
// too (TlsSocket reports eof), as Go's crypto/tls (`consul connect proxy`) does: L4
// proxying carries no length of its own to protect, so truncation tells us nothing.
//
// Byte counts go to the listener's counters in chunks of kCountChunk and at the end, so
// the hot path does one add per ~1 MiB instead of one atomic CAS per read.
//
// Threads: everything here runs on the connection's executor (one io thread).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <span>

#include "tls_socket.hpp"

namespace prometheus {
class Counter;
}

namespace coromesh::sidecar {

using TcpSocket = boost::asio::ip::tcp::socket;
using TlsStream = TlsSocket;

// Per pump direction: TLS records are at most 16 KiB; one record per read or write.
// A pump holds its buffer only while bytes are moving: after a read that emptied the
// source (shorter than the buffer) it gives the buffer back and waits for the source to
// become readable holding none. A sidecar's connections are mostly idle keep-alive ones,
// and 1,000 of them then hold no pump buffer at all (they held 32 KiB each, of which
// whatever pages earlier allocations had touched were resident).
inline constexpr std::size_t kPumpBuffer = 16 * 1024;

// Pump buffers held right now, by every pump of the process (for tests and gauges).
std::size_t pump_buffers_held() noexcept;
inline constexpr std::uint64_t kCountChunk = 1024 * 1024;

// When a byte last moved either way; read by idle_watch on the same thread.
struct Activity {
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
};

// Returns once no byte has moved for `idle` (the connection is then closed by the
// caller); never returns while traffic flows.
boost::asio::awaitable<void> idle_watch(const Activity& activity, std::chrono::nanoseconds idle);

// Both pumps between a client and a server, under an idle watch; returns when both
// directions have ended, either failed (the other is then cancelled), or the connection
// was idle for `idle`. Never throws for I/O errors: they end the connection, which is
// what every caller does with them. Allocates a pump buffer per burst of traffic.
template <class Client, class Server>
boost::asio::awaitable<void> splice(Client& client, Server& server, std::chrono::nanoseconds idle,
                                    prometheus::Counter* from_client,
                                    prometheus::Counter* to_client);

// TCP_NODELAY: proxied request/response traffic must not wait for Nagle.
void set_no_delay(TcpSocket& socket);
TcpSocket& lowest_layer(TcpSocket& socket);
TcpSocket& lowest_layer(TlsStream& stream);

extern template boost::asio::awaitable<void> splice(TlsStream&, TcpSocket&,
                                                    std::chrono::nanoseconds, prometheus::Counter*,
                                                    prometheus::Counter*);
extern template boost::asio::awaitable<void> splice(TcpSocket&, TlsStream&,
                                                    std::chrono::nanoseconds, prometheus::Counter*,
                                                    prometheus::Counter*);
extern template boost::asio::awaitable<void> splice(TcpSocket&, TcpSocket&,
                                                    std::chrono::nanoseconds, prometheus::Counter*,
                                                    prometheus::Counter*);

}  // namespace coromesh::sidecar
