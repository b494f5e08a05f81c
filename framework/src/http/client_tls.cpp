#include "client_tls.hpp"

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

#include "coromesh/http/client.hpp"
#include "tls_support.hpp"

namespace coromesh::http::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;

asio::awaitable<ClientConnection> start_client_tls(beast::tcp_stream tcp, const ClientTls& tls,
                                                   const std::string& label,
                                                   std::chrono::steady_clock::time_point start,
                                                   std::chrono::milliseconds handshake_timeout) {
  std::shared_ptr<TlsContext> context = tls.context ? tls.context() : nullptr;
  if (!context) {
    throw ClientError(ClientErrc::tls_handshake,
                      "TLS to " + label + ": no client context (certificate) available yet");
  }
  ClientConnection connection(std::move(tcp), std::move(context));
  auto& stream = std::get<ClientConnection::Tls>(connection.stream);
  SSL* session = stream.native_handle();
  require_tls12_or_later(session);
  if (!tls.server_name.empty()) {
    // SSL_set_tlsext_host_name() is a macro with a C cast that g++ -Wold-style-cast refuses.
    SSL_ctrl(session, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(tls.server_name.c_str()));
  }
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::client,
                                              asio::as_tuple(asio::use_awaitable));
  auto tell = [&tls](TlsHandshakeResult result, std::string_view reason) {
    if (tls.on_handshake) {
      tls.on_handshake(result, reason);
    }
  };
  if (ec == beast::error::timeout) {
    tell(TlsHandshakeResult::timed_out, "handshake timed out");
    if (handshake_timeout.count() > 0) {
      // Its own bound, not the call's deadline: nothing was sent, another endpoint may be
      // tried (never_reached).
      throw ClientError(ClientErrc::tls_handshake,
                        "TLS handshake with " + label +
                            ": no answer within the handshake timeout of " +
                            std::to_string(handshake_timeout.count()) + "ms");
    }
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    throw ClientError(ClientErrc::timeout, "TLS handshake with " + label + " timed out after " +
                                               std::to_string(elapsed.count()) + "ms");
  }
  if (ec == asio::error::operation_aborted) {
    throw boost::system::system_error(ec);  // the caller cancelled: not a ClientError
  }
  if (ec) {
    const auto openssl_reason = describe_tls_failure(ec);
    const auto reason = tls.describe_failure ? tls.describe_failure(session, ec) : openssl_reason;
    tell(TlsHandshakeResult::failed, reason);
    throw ClientError(ClientErrc::tls_handshake,
                      "TLS handshake with " + label + " failed: " + reason +
                          (reason == openssl_reason ? "" : " (" + openssl_reason + ")"));
  }
  if (tls.verify_peer) {
    auto verdict = tls.verify_peer(session);
    if (!verdict.accepted()) {
      tell(TlsHandshakeResult::refused, verdict.reason());
      throw ClientError(ClientErrc::peer_rejected,
                        "TLS peer " + label + " rejected: " + verdict.reason());
    }
  }
  tell(TlsHandshakeResult::accepted, {});
  co_return connection;
}

bool tls_holds_unread_bytes(SSL* session) noexcept {
  return SSL_pending(session) > 0 || BIO_ctrl_pending(SSL_get_rbio(session)) > 0;
}

}  // namespace coromesh::http::detail
