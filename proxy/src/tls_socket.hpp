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
// The same reads and writes are offered as Asio's AsyncReadStream / AsyncWriteStream
// (async_read_some, async_write_some), so Beast reads and writes HTTP on it (the public
// listener's http mode).
//
// Concurrency: one read (read_some) and one write (write_all) may be in flight at once
// (the two pumps), on the socket's executor only; TLS 1.2 renegotiation is refused, so a
// write never needs to read. Cancellation through the awaiting coroutine's slot ends a
// wait with operation_aborted.
//
// Closing: next_layer().close() (a drain's cut-off, a shed handshake) ends every
// operation; one that was about to call OpenSSL fails with bad_descriptor instead. OpenSSL
// keeps the descriptor's number (SSL_set_fd), and once the socket is closed that number
// may be another connection's: nothing here hands it to OpenSSL again.
//
// Errors: end of stream is asio::error::eof, whether the peer sent close_notify or only a
// FIN (SSL_OP_IGNORE_UNEXPECTED_EOF: the other direction must stay writable); OpenSSL failures are
// asio's ssl category with ERR_get_error()'s code, as asio::ssl reports them
// (connect::classify_handshake_failure reads those).

#include <openssl/ssl.h>

#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
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

  using executor_type = boost::asio::ip::tcp::socket::executor_type;
  executor_type get_executor() noexcept { return socket_.get_executor(); }

  SSL* native_handle() noexcept { return ssl_; }
  boost::asio::ip::tcp::socket& next_layer() noexcept { return socket_; }

  boost::asio::awaitable<boost::system::error_code> handshake();
  // At least one byte, or an error (eof / stream_truncated at the end).
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      std::span<std::byte> buffer);
  // For a reader that holds no buffer while it waits (the sidecar's pumps): returns at
  // once when OpenSSL already holds bytes of the socket, else frees OpenSSL's empty
  // record buffers and waits until the socket is readable. The next read_some() then
  // calls SSL_read at once. Cancellation ends the wait with operation_aborted.
  boost::asio::awaitable<boost::system::error_code> wait_until_readable();
  // All of `data`, or an error; returns how much was written.
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_all(
      std::span<const std::byte> data);
  // Sends close_notify (without waiting for the peer's) and shuts the TCP send side.
  void shutdown_send();

  // AsyncReadStream / AsyncWriteStream: the first non-empty buffer of the sequence.
  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        IoOp{this, first_buffer<boost::asio::mutable_buffer>(buffers), false}, token, socket_);
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        IoOp{this, first_buffer<boost::asio::mutable_buffer>(buffers), true}, token, socket_);
  }

 private:
  // One SSL_read or SSL_write: bytes moved (> 0), or 0 with `want` set to what to wait
  // for before trying again, or 0 with `error` set.
  std::size_t try_io(bool write, boost::asio::mutable_buffer buffer, int& want,
                     boost::system::error_code& error);

  template <class Buffer, class Sequence>
  static Buffer first_buffer(const Sequence& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      const boost::asio::const_buffer buffer(*it);
      if (buffer.size() > 0) {
        // Only read from on the write path; one type for both keeps IoOp single.
        return Buffer(const_cast<void*>(buffer.data()), buffer.size());
      }
    }
    return Buffer();
  }

  // async_read_some / async_write_some: the first step runs in the initiating call, so
  // that by the time it returns the operation is either waiting on the socket (where a
  // cancel() or close() of next_layer() reaches it: drain_exchanges cancels a pending read
  // that way) or done. A step posted first instead was out of reach of both: a cancel()
  // that came before it ran was lost, and the read went on waiting for the peer. A result
  // the first step already has is delivered through a post (never inside the initiating
  // call, so Beast's loops do not recurse); later steps wait for the socket only when
  // OpenSSL asks to.
  struct IoOp {
    TlsSocket* tls;
    boost::asio::mutable_buffer buffer;
    bool write;
    bool started = false;
    bool finished = false;  // by the first step: `result` waits for the post to deliver it
    boost::system::error_code result;
    std::size_t moved = 0;

    template <class Self>
    void operator()(Self& self, boost::system::error_code waited = {}) {
      if (finished) {
        self.complete(result, moved);
        return;
      }
      const bool first = !started;
      started = true;
      if (!first) {
        // A cancellation emitted while a completion was queued reached no operation and
        // would be lost: the next wait would hold on long past the `||` that asked to stop.
        if (self.cancelled() != boost::asio::cancellation_type::none) {
          self.complete(boost::asio::error::operation_aborted, 0);
          return;
        }
        if (waited) {
          self.complete(waited, 0);
          return;
        }
      }
      if (buffer.size() == 0) {
        finish(self, first, {}, 0);
        return;
      }
      if (!write && tls->read_wait_first()) {
        tls->socket_.async_wait(boost::asio::ip::tcp::socket::wait_read, std::move(self));
        return;
      }
      int want = 0;
      boost::system::error_code error;
      const std::size_t done = tls->try_io(write, buffer, want, error);
      if (done > 0 || error) {
        finish(self, first, error, done);
        return;
      }
      tls->socket_.async_wait(want == SSL_ERROR_WANT_WRITE
                                  ? boost::asio::ip::tcp::socket::wait_write
                                  : boost::asio::ip::tcp::socket::wait_read,
                              std::move(self));
    }

    template <class Self>
    void finish(Self& self, bool first, boost::system::error_code error, std::size_t done) {
      if (!first) {
        self.complete(error, done);
        return;
      }
      finished = true;
      result = error;
      moved = done;
      boost::asio::post(tls->socket_.get_executor(), std::move(self));
    }
  };

  // Whether a read should wait for the socket before calling SSL_read (and then does:
  // the flag is cleared). True when the last SSL_read returned data and OpenSSL holds no
  // byte of the socket's: a request/response stream has then most likely nothing more
  // to read, and SSL_read would only make a read() that returns EAGAIN before the wait.
  // Waiting first cannot miss data already there: asio re-arms the descriptor for each
  // wait (epoll_ctl MOD), and the kernel reports it at once if it is readable.
  bool read_wait_first() noexcept;
  // The error for a failed OpenSSL call (`result` its return value).
  boost::system::error_code error_for(int result);
  boost::asio::awaitable<boost::system::error_code> wait(int ssl_error);

  boost::asio::ip::tcp::socket socket_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  SSL* ssl_ = nullptr;
  bool last_read_had_data_ = false;  // see read_wait_first()
};

}  // namespace coromesh::sidecar
