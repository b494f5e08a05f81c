#pragma once

// A TLS connection driven straight on its non-blocking TCP socket: OpenSSL reads and
// writes the file descriptor itself, and the coroutine waits for readiness only after
// OpenSSL reports WANT_READ / WANT_WRITE (i.e. after the socket said EAGAIN, so an
// edge-triggered reactor cannot miss the next event).
//
// Why not boost::asio::ssl::stream: it copies every byte through a BIO pair and keeps
// four ~17 KiB buffers per connection (two in stream_core, two in the BIO pair), about
// 70 KiB of a sidecar connection's ~110 KiB; a sidecar holding 1,000 connections must
// stay under 64 MiB (issue 9). Here OpenSSL's own record buffers are the only ones, and
// SSL_MODE_RELEASE_BUFFERS frees them while a connection is idle. It also lets a
// half-close send a real close_notify without waiting for the peer's.
//
// Concurrency: one read (read_some) and one write (write_all) may be in flight at once
// (the two pumps), on the socket's executor only; TLS 1.2 renegotiation is refused, so a
// write never needs to read. Cancellation through the awaiting coroutine's slot ends a
// wait with operation_aborted.
//
// Errors: end of stream is asio::error::eof, whether the peer sent close_notify or only a
// FIN (SSL_OP_IGNORE_UNEXPECTED_EOF: the other direction must stay writable); OpenSSL failures are
// asio's ssl category with ERR_get_error()'s code, as asio::ssl reports them
// (connect::classify_handshake_failure reads those).

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>
#include <span>
#include <tuple>

namespace coromesh::sidecar {

class TlsSocket {
 public:
  enum class Role : std::uint8_t { server, client };

  // Takes the connected socket; keeps `context` for as long as the connection lives.
  TlsSocket(boost::asio::ip::tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> context,
            Role role);
  ~TlsSocket();
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  SSL* native_handle() noexcept { return ssl_; }
  boost::asio::ip::tcp::socket& next_layer() noexcept { return socket_; }

  boost::asio::awaitable<boost::system::error_code> handshake();
  // At least one byte, or an error (eof / stream_truncated at the end).
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      std::span<std::byte> buffer);
  // All of `data`, or an error; returns how much was written.
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_all(
      std::span<const std::byte> data);
  // Sends close_notify (without waiting for the peer's) and shuts the TCP send side.
  void shutdown_send();

 private:
  // The error for a failed OpenSSL call (`result` its return value).
  boost::system::error_code error_for(int result);
  boost::asio::awaitable<boost::system::error_code> wait(int ssl_error);

  boost::asio::ip::tcp::socket socket_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  SSL* ssl_ = nullptr;
};

}  // namespace coromesh::sidecar
