#include "tls_socket.hpp"

#include <openssl/err.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <limits>
#include <new>

namespace coromesh::sidecar {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Empties this thread's OpenSSL error queue before an SSL call, so that SSL_get_error()
// sees that call's errors only. OpenSSL 3.0's ERR_clear_error() resets all 16 slots of the
// queue, two OPENSSL_free()s each, even when it is empty (~800 instructions, a tenth of a
// relayed record's SSL_read or SSL_write); it is empty here almost always, which
// ERR_peek_error() tells in a few dozen. What it does not see (no entry, or only ones
// marked cleared), SSL_get_error() and ERR_get_error() do not see either.
void clear_error_queue() noexcept {
  if (ERR_peek_error() != 0) {
    ERR_clear_error();
  }
}

}  // namespace

TlsSocket::TlsSocket(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> context,
                     Role role)
    : socket_(std::move(socket)),
      context_(std::move(context)),
      ssl_(SSL_new(context_->native_handle())) {
  if (ssl_ == nullptr) {
    throw std::bad_alloc();
  }
  socket_.non_blocking(true);
  SSL_set_fd(ssl_, socket_.native_handle());
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                         SSL_MODE_RELEASE_BUFFERS);
  // A peer's FIN without close_notify reads as a clean end (SSL_ERROR_ZERO_RETURN). Without
  // this OpenSSL 3 fails the whole connection on it, so the other direction of a
  // half-closed connection could no longer be written.
  SSL_set_options(ssl_, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // One read() takes whatever the socket holds (up to OpenSSL's ~17 KiB record buffer)
  // instead of a 5-byte header, then the body, each record. Safe because nothing here
  // waits on the socket before asking OpenSSL: a wait follows WANT_READ (OpenSSL found
  // too few bytes buffered and the socket said EAGAIN), or read_wait_first() (nothing
  // buffered at all, SSL_has_pending).
  SSL_set_read_ahead(ssl_, 1);
  if (role == Role::server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
}

TlsSocket::~TlsSocket() {
  SSL_free(ssl_);  // does not close the descriptor: socket_ does, after this
}

error_code TlsSocket::error_for(int result) {
  const int ssl_error = SSL_get_error(ssl_, result);
  if (ssl_error == SSL_ERROR_ZERO_RETURN) {
    return asio::error::eof;
  }
  if (ssl_error == SSL_ERROR_SYSCALL) {
    const auto queued = ERR_get_error();
    if (queued != 0) {
      return {static_cast<int>(queued), asio::error::get_ssl_category()};
    }
    if (errno != 0 && result < 0) {
      return {errno, asio::error::get_system_category()};
    }
    return asio::ssl::error::stream_truncated;  // the peer closed without close_notify
  }
  const auto queued = ERR_get_error();
  ERR_clear_error();
  return {static_cast<int>(queued != 0 ? queued : static_cast<unsigned long>(ssl_error)),
          asio::error::get_ssl_category()};
}

asio::awaitable<error_code> TlsSocket::wait(int ssl_error) {
  const auto what = ssl_error == SSL_ERROR_WANT_WRITE ? asio::ip::tcp::socket::wait_write
                                                      : asio::ip::tcp::socket::wait_read;
  auto [ec] = co_await socket_.async_wait(what, asio::as_tuple(asio::use_awaitable));
  co_return ec;
}

asio::awaitable<error_code> TlsSocket::handshake() {
  for (;;) {
    if (!socket_.is_open()) {
      co_return asio::error::bad_descriptor;  // closed while we waited: see try_io
    }
    clear_error_queue();
    errno = 0;
    const int result = SSL_do_handshake(ssl_);
    if (result == 1) {
      co_return error_code{};
    }
    const int ssl_error = SSL_get_error(ssl_, result);
    if (ssl_error != SSL_ERROR_WANT_READ && ssl_error != SSL_ERROR_WANT_WRITE) {
      co_return error_for(result);
    }
    if (const auto ec = co_await wait(ssl_error)) {
      co_return ec;
    }
  }
}

bool TlsSocket::read_wait_first() noexcept {
  if (!last_read_had_data_ || SSL_has_pending(ssl_) != 0) {
    return false;
  }
  last_read_had_data_ = false;  // the next SSL_read, after this wait, tells again
  // OpenSSL (SSL_MODE_RELEASE_BUFFERS) frees its empty read buffer when a read() returns
  // EAGAIN, which this wait skips: free it here, so that an idle connection still holds
  // no record buffer (~17 KiB; 1,000 held connections must stay under 64 MiB). Nothing
  // is lost: it does nothing while a record or a write is pending.
  SSL_free_buffers(ssl_);
  return true;
}

asio::awaitable<error_code> TlsSocket::wait_until_readable() {
  if (SSL_has_pending(ssl_) != 0) {
    co_return error_code{};
  }
  last_read_had_data_ = false;  // waited here: read_some() must not wait again
  SSL_free_buffers(ssl_);       // does nothing while a record or a write is pending
  co_return co_await wait(SSL_ERROR_WANT_READ);
}

asio::awaitable<std::tuple<error_code, std::size_t>> TlsSocket::read_some(
    std::span<std::byte> buffer) {
  if (read_wait_first()) {
    if (const auto ec = co_await wait(SSL_ERROR_WANT_READ)) {
      co_return std::tuple{ec, std::size_t{0}};
    }
  }
  for (;;) {
    int want = 0;
    error_code error;
    const std::size_t read = try_io(false, asio::buffer(buffer.data(), buffer.size()), want, error);
    if (read > 0 || error) {
      co_return std::tuple{error, read};
    }
    if (const auto ec = co_await wait(want)) {
      co_return std::tuple{ec, std::size_t{0}};
    }
  }
}

asio::awaitable<std::tuple<error_code, std::size_t>> TlsSocket::write_all(
    std::span<const std::byte> data) {
  std::size_t written = 0;
  while (written < data.size()) {
    const auto left = data.subspan(written);
    int want = 0;
    error_code error;
    // SSL_write only reads the buffer; the cast keeps one try_io for both directions.
    written +=
        try_io(true, asio::buffer(const_cast<std::byte*>(left.data()), left.size()), want, error);
    if (error) {
      co_return std::tuple{error, written};
    }
    if (want != 0) {
      if (const auto ec = co_await wait(want)) {
        co_return std::tuple{ec, written};
      }
    }
  }
  co_return std::tuple{error_code{}, written};
}

std::size_t TlsSocket::try_io(bool write, asio::mutable_buffer buffer, int& want,
                              error_code& error) {
  if (!socket_.is_open()) {
    // Closed by a cut-off or a shed while this step was queued: OpenSSL still holds the
    // descriptor's number, which may already be another connection's (accepted or dialled
    // on any thread since), and would read its bytes or write our records into it.
    error = asio::error::bad_descriptor;
    return 0;
  }
  clear_error_queue();
  errno = 0;
  const int size =
      static_cast<int>(std::min<std::size_t>(buffer.size(), std::numeric_limits<int>::max()));
  const int result =
      write ? SSL_write(ssl_, buffer.data(), size) : SSL_read(ssl_, buffer.data(), size);
  if (!write) {
    last_read_had_data_ = result > 0;
  }
  if (result > 0) {
    return static_cast<std::size_t>(result);
  }
  const int ssl_error = SSL_get_error(ssl_, result);
  if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) {
    want = ssl_error;
  } else {
    error = error_for(result);
  }
  return 0;
}

void TlsSocket::shutdown_send() {
  if (!socket_.is_open()) {
    return;  // cut off already; its descriptor's number may be another connection's now
  }
  clear_error_queue();
  // Queues and (the socket permitting) sends close_notify; 0 means "sent, the peer's not
  // yet received", which is all a half-close needs. A full socket buffer drops it: the
  // FIN below still ends the stream (read as stream_truncated).
  SSL_shutdown(ssl_);
  ERR_clear_error();
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace coromesh::sidecar
