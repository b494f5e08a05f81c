#include "hang_up_watch.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/bind_cancellation_slot.hpp>

namespace coromesh::http::detail {

namespace asio = boost::asio;

namespace {

enum class PeerSign { nothing, bytes, hung_up };

// What the client has done since the socket was last read, asked of the kernel without
// reading or blocking (see hang_up_watch.hpp for the table).
PeerSign peer_sign(Connection& connection) {
  const int fd = connection.socket.native_handle();
  pollfd watched{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&watched, 1, 0) <= 0) {
    return PeerSign::nothing;  // EINTR included: the next wake-up asks again
  }
  if ((watched.revents & (POLLERR | POLLHUP)) != 0) {
    return PeerSign::hung_up;
  }
  if ((watched.revents & POLLRDHUP) != 0) {
    if (connection.pipelining) {
      return PeerSign::bytes;  // a half-close behind the client's requests
    }
    if (!connection.tls) {
      // Over plain TCP, bytes ahead of the FIN are a pipelined request: the client
      // half-closed behind it. (Over TLS they are more likely its close_notify.)
      char byte = 0;
      if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        return PeerSign::bytes;
      }
    }
    return PeerSign::hung_up;
  }
  return (watched.revents & POLLIN) != 0 ? PeerSign::bytes : PeerSign::nothing;
}

void hang_up(Connection& connection) {
  connection.watching = false;
  connection.hung_up = true;
  // The drain's own way to stop a handler (Server::State::close_all): whatever the
  // handler awaits now completes with operation_aborted.
  connection.cancel.emit(asio::cancellation_type::terminal);
}

// Asks the kernel what the client did and acts on it; whether to go on watching.
bool keep_watching(Connection& connection) {
  switch (peer_sign(connection)) {
    case PeerSign::hung_up:
      hang_up(connection);
      return false;
    case PeerSign::bytes:
      if (!connection.tls) {
        // A pipelined request: the client is there and waits for its answers.
        connection.pipelining = true;
        connection.watching = false;
        return false;
      }
      return true;  // a TLS record: maybe the close_notify before the FIN
    case PeerSign::nothing:
      return true;
  }
  return true;
}

void arm(const std::shared_ptr<Connection>& shared) {
  Connection& connection = *shared;
  connection.socket.async_wait(
      asio::socket_base::wait_read,
      asio::bind_cancellation_slot(
          connection.stop_watching.slot(),
          [shared, generation = connection.watch_generation](const boost::system::error_code& ec) {
            Connection& watched = *shared;
            // Stopped, closed by a drain or the watchdog, or a late wake-up for a request
            // already answered: the handler it was for is not running any more.
            if (ec || !watched.watching || generation != watched.watch_generation) {
              return;
            }
            if (keep_watching(watched)) {
              // Edge-triggered: the wait wakes again only for what arrives from now on.
              arm(shared);
            }
          }));
}

}  // namespace

void start_hang_up_watch(const std::shared_ptr<Connection>& shared) {
  Connection& connection = *shared;
  ++connection.watch_generation;
  // Asked before the wait is queued: nothing runs this io_context's reactor in between
  // (its one thread is here), so an event arriving from now on wakes the wait.
  if (!keep_watching(connection)) {
    return;
  }
  connection.watching = true;
  arm(shared);
}

void stop_hang_up_watch(Connection& connection) {
  if (connection.watching) {
    connection.watching = false;
    connection.stop_watching.emit(asio::cancellation_type::terminal);
  }
}

}  // namespace coromesh::http::detail
