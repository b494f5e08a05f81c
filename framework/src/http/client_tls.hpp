#pragma once

// Internal: the TLS half of http::Client's connect: handshake and peer check on a fresh
// TCP connection to a destination with ClientTls.

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <string>

#include "client_pool.hpp"
#include "coromesh/http/tls.hpp"

namespace coromesh::http::detail {

// Wraps `tcp` (connected, its expiry set for the handshake) in TLS as `tls` says. Throws
// ClientError: tls_handshake (no context, the handshake failed, or it outlasted
// `handshake_timeout` when that is what `tcp`'s expiry is), timeout (the call's deadline
// ended it), peer_rejected (verify_peer refused the server); a cancellation as
// operation_aborted. `label` names the destination in messages; `start` is when the call
// began.
boost::asio::awaitable<ClientConnection> start_client_tls(
    boost::beast::tcp_stream tcp, const ClientTls& tls, const std::string& label,
    std::chrono::steady_clock::time_point start, std::chrono::milliseconds handshake_timeout);

// Whether the TLS layer under `session` holds bytes the reader has not taken: decrypted
// ones (SSL_pending) or records received and not yet decrypted (in Asio's BIO pair,
// read off the socket with the last record asked for). Neither shows in the read buffer
// or on the socket.
bool tls_holds_unread_bytes(SSL* session) noexcept;

}  // namespace coromesh::http::detail
