// The TLS half of http::Server's connection: handshake within a deadline, peer check,
// the ordinary request loop over the TLS stream, and close_notify at the end. Every
// handshake's outcome is counted, told to the observer, and — unless accepted — logged
// once per reason per kTlsLogPeriod.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <optional>

#include "coromesh/log/logger.hpp"
#include "server_state.hpp"
#include "tls_support.hpp"

namespace coromesh::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

// A refusal flood (a scanner, a misconfigured peer retrying) must not flood the log:
// each reason gets one line per period, carrying how many went unlogged since.
constexpr std::chrono::seconds kTlsLogPeriod{10};
// Reasons come from OpenSSL and peer checks, both of bounded variety; past this many
// distinct ones, new ones are counted under one label rather than growing the map.
constexpr std::size_t kMaxTlsReasons = 128;
// close_notify is a courtesy: a peer that does not answer it within this is dropped.
constexpr std::chrono::milliseconds kTlsShutdownTimeout{1'000};

}  // namespace

std::string_view to_string(TlsHandshakeResult result) noexcept {
  switch (result) {
    case TlsHandshakeResult::accepted:
      return "accepted";
    case TlsHandshakeResult::refused:
      return "refused";
    case TlsHandshakeResult::failed:
      return "failed";
    case TlsHandshakeResult::timed_out:
      return "timed_out";
  }
  return "unknown";
}

void Server::State::record_handshake(TlsHandshakeResult result, std::string_view reason,
                                     const std::string& peer_address) {
  switch (result) {
    case TlsHandshakeResult::accepted:
      ++tls_accepted;
      break;
    case TlsHandshakeResult::refused:
      ++tls_refused;
      break;
    case TlsHandshakeResult::failed:
      ++tls_failed;
      break;
    case TlsHandshakeResult::timed_out:
      ++tls_timed_out;
      break;
  }
  if (observer) {
    observer->tls_handshake_finished(result, reason);
  }
  if (result == TlsHandshakeResult::accepted) {
    return;
  }
  auto now = std::chrono::steady_clock::now();
  std::uint64_t unlogged = 0;
  bool log_now = false;
  {
    std::lock_guard lock(tls_mutex);
    auto it = tls_reasons.find(reason);
    if (it == tls_reasons.end()) {
      auto key = tls_reasons.size() < kMaxTlsReasons ? std::string(reason) : "other";
      it = tls_reasons.try_emplace(std::move(key)).first;
    }
    auto& entry = it->second;
    ++entry.count;
    if (entry.count == 1 || now - entry.last_logged >= kTlsLogPeriod) {
      log_now = true;
      unlogged = entry.unlogged;
      entry.unlogged = 0;
      entry.last_logged = now;
    } else {
      ++entry.unlogged;
    }
  }
  if (log_now) {
    log::warn("http.tls.handshake", {{"result", to_string(result)},
                                     {"reason", reason},
                                     {"peer", peer_address},
                                     {"suppressed", unlogged}});
  }
}

asio::awaitable<void> Server::State::serve_tls(const std::shared_ptr<detail::Connection>& shared) {
  detail::Connection& connection = *shared;
  std::string peer_address;
  boost::system::error_code endpoint_error;
  auto peer = connection.socket.remote_endpoint(endpoint_error);
  if (!endpoint_error) {
    peer_address = peer.address().to_string() + ":" + std::to_string(peer.port());
  }
  // This connection keeps the context it starts with (and so its certificate) for as
  // long as it lives, however often the provider's context is replaced meanwhile.
  std::shared_ptr<TlsContext> context = tls->context();
  if (!context) {
    record_handshake(TlsHandshakeResult::failed, "no certificate to present", peer_address);
    co_return;
  }
  detail::TlsServerStream stream(connection.socket, *context);
  detail::require_tls12_or_later(stream.native_handle());

  connection.expires_after(tls->handshake_timeout);
  connection.handshaking = true;
  auto [handshake_error] =
      co_await stream.async_handshake(asio::ssl::stream_base::server, kUseTuple);
  connection.handshaking = false;
  if (handshake_error) {
    // Only a handshake the drain interrupted (`cut_off`) is nobody's failure: `closing` is
    // set from the drain's start, and a handshake that fails by itself meanwhile (a bad
    // hello, an untrusted certificate) has failed like any other. An OpenSSL error is the
    // exchange's own even then: the drain's cancellation or shutdown came too late to
    // cause it, and only ends the wait (operation_aborted) or the stream (eof, EPIPE).
    const bool drain_did_it =
        connection.cut_off && handshake_error.category() != asio::error::get_ssl_category();
    if (connection.timed_out) {
      record_handshake(TlsHandshakeResult::timed_out, "handshake timed out", peer_address);
    } else if (!drain_did_it) {
      auto reason = tls->describe_failure
                        ? tls->describe_failure(stream.native_handle(), handshake_error)
                        : detail::describe_tls_failure(handshake_error);
      record_handshake(TlsHandshakeResult::failed, reason, peer_address);
    }
    co_return;
  }

  auto verdict = PeerVerdict::accept({});
  if (tls->accept_peer) {
    try {
      verdict = tls->accept_peer(stream.native_handle());
    } catch (const std::exception& e) {
      log::error("http.tls.peer_check.exception", {{"error", e.what()}});
      verdict = PeerVerdict::refuse("peer check failed");
    }
  }
  if (verdict.accepted() && tls->authorize_peer) {
    connection.expires_after(tls->handshake_timeout);
    std::optional<PeerVerdict> decided;
    connection.authorizing = true;
    try {
      decided.emplace(co_await tls->authorize_peer(verdict.identity(), stream.native_handle()));
    } catch (const boost::system::system_error& e) {
      // Only the drain's own cancellation (`cut_off`, set as its last step cancels this
      // wait) is nobody's refusal: a drain's start leaves the authorization alone, and an
      // operation_aborted of another cause meanwhile (the authorizer's own request
      // cancelled) is its failure like any other.
      if (e.code() == asio::error::operation_aborted && connection.cut_off) {
        co_return;
      }
      log::error("http.tls.authorization.exception", {{"error", e.what()}});
    } catch (const std::exception& e) {
      log::error("http.tls.authorization.exception", {{"error", e.what()}});
    }
    connection.authorizing = false;
    if (connection.timed_out) {
      record_handshake(TlsHandshakeResult::timed_out, "authorization timed out", peer_address);
      co_return;
    }
    if (!connection.socket.is_open()) {
      co_return;  // a drain closed it while the answer was awaited
    }
    verdict = decided ? std::move(*decided) : PeerVerdict::refuse("authorization failed");
  }
  if (!verdict.accepted()) {
    record_handshake(TlsHandshakeResult::refused, verdict.reason(), peer_address);
    if (!verdict.answer()) {
      // No HTTP answer, no close_notify: the peer learns nothing beyond the closed socket.
      co_return;
    }
    // A verified peer told why: its first request is answered, then the session closed.
    connection.canned_answer = verdict.answer();
  } else {
    record_handshake(TlsHandshakeResult::accepted, {}, peer_address);
    connection.peer_identity = verdict.identity();
  }

  co_await serve_requests(shared, stream);

  // The session ended on our side or cleanly on the client's: say so with close_notify,
  // which also lets the client tell a complete response from a truncated one. A
  // connection the watchdog or a drain's last step closed is past that.
  if (connection.socket.is_open() && !connection.cut_off && !connection.timed_out) {
    connection.expires_after(
        std::min<std::chrono::steady_clock::duration>(kTlsShutdownTimeout, limits.write_timeout));
    co_await stream.async_shutdown(kUseTuple);
  }
}

}  // namespace coromesh::http
