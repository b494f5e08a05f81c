#include "hang_up_watch.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>

#include "coromesh/http/peer_sign.hpp"

namespace coromesh::http::detail {

namespace asio = boost::asio;

namespace {

// What the client has done since the socket was last read (see http/peer_sign.hpp).
PeerSign peer_sign(Connection& connection) {
  return http::peer_sign(connection.socket.native_handle(), connection.tls, connection.pipelining);
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
