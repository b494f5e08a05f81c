#pragma once

// The TLS seam of http::Server and http::Client: what a caller plugs in to run the same
// server and client over TLS (mutual TLS for Consul Connect) instead of plain TCP.
//
// The http module does not build contexts nor decide whom to trust: a certificate
// source (e.g. the Connect module's, which follows Consul's leaf and roots) provides the
// OpenSSL context for each new handshake, and a peer check (e.g. "the certificate's
// SPIFFE ID names service b") decides on the peer once the handshake has verified its
// chain. Both are plain std::function values, so http/ depends on neither.
//
// Whatever the context allows, both sides refuse protocol versions below TLS 1.2.

#include <openssl/types.h>

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace coromesh::http {

using TlsContext = boost::asio::ssl::context;

// Returns the context for the next handshake; null refuses the connection (no
// certificate yet). Called once per new connection, on that connection's io thread, so
// it must be thread-safe and cheap (hand out a shared_ptr kept up to date elsewhere).
// Each connection keeps the context it started with: a rotated certificate applies to
// the next handshake at once, and connections already open are not disturbed.
using TlsContextProvider = std::function<std::shared_ptr<TlsContext>()>;

// The context `provider` gives for the next handshake, waiting for one up to `until`:
// for the first moments after start-up, before Consul has issued this service's Connect
// leaf (or before a token that may fetch it is in place). A handshake without one would
// fail, and the failure would be held against the peer. Returns null when `until` came
// first; throws operation_aborted when the awaiting coroutine is cancelled.
// Polls every 20 ms on the caller's executor: the provider is fed on another thread
// (Consul's), its readers may be on any, and the wait is rare and short. Call it once the
// provider has said null: it takes the provider by value, so the frame owns what it calls.
boost::asio::awaitable<std::shared_ptr<TlsContext>> await_tls_context(
    TlsContextProvider provider, std::chrono::steady_clock::time_point until);

// What a peer check decides about the other side of a completed handshake.
class PeerVerdict {
 public:
  // `identity` names the peer (e.g. its SPIFFE URI); a server hands it to handlers in
  // RequestContext::peer_identity.
  static PeerVerdict accept(std::string identity) { return {true, std::move(identity)}; }
  // `reason` is short and of bounded variety ("wrong trust domain", "service denied"): it
  // labels counters and log lines.
  static PeerVerdict refuse(std::string reason) { return {false, std::move(reason)}; }
  // Refused, but told why in HTTP terms: every request on the session is answered with
  // `answer` (its status, `{"error": code, "reason": reason}`) and the connection closed,
  // as Envoy's L7 RBAC filter answers 403. Only for a peer whose certificate was verified
  // (it is who it says it is), so telling it the reason leaks nothing to strangers.
  struct Answer {
    unsigned status = 403;
    std::string code;
    std::string reason;
  };
  static PeerVerdict refuse(std::string reason, Answer answer) {
    PeerVerdict verdict{false, std::move(reason)};
    verdict.answer_ = std::move(answer);
    return verdict;
  }

  bool accepted() const noexcept { return accepted_; }
  const std::string& identity() const noexcept { return text_; }  // when accepted
  const std::string& reason() const noexcept { return text_; }    // when refused
  // When refused with an answer: what each request is answered with.
  const std::optional<Answer>& answer() const noexcept { return answer_; }

 private:
  PeerVerdict(bool accepted, std::string text) : accepted_(accepted), text_(std::move(text)) {}
  bool accepted_;
  std::string text_;
  std::optional<Answer> answer_;
};

// Inspects the peer of a completed handshake (SSL_get0_peer_certificate and friends).
// Called on the connection's io thread; must be thread-safe and must not block.
using PeerCheck = std::function<PeerVerdict(SSL* session)>;

// Whether a peer that the PeerCheck accepted may be served: asked once per connection,
// after the handshake, and awaited (e.g. Consul's intentions through the Connect
// module's Authorizer, which may ask the agent). Gets the accepted identity and the
// session, which stays valid while the call runs (the connection waits for it).
// Runs on the connection's io thread; must not throw (a throw refuses the peer).
using PeerAuthorization =
    std::function<boost::asio::awaitable<PeerVerdict>(std::string identity, SSL* session)>;

struct ServerTls {
  TlsContextProvider context;  // required
  // From accept to the end of the handshake; a slower client is cut off and counted.
  std::chrono::milliseconds handshake_timeout{10'000};
  // Empty: every peer the context's own verification lets through is accepted with an
  // empty identity (plain HTTPS). A refused peer is closed without an HTTP answer.
  PeerCheck accept_peer;
  // Empty: every peer accept_peer accepts is served. Otherwise a refusal closes the
  // connection like accept_peer's (counted as `refused`, with the verdict's reason) —
  // after answering the peer's requests with the verdict's answer, if it has one; the
  // verdict must come within handshake_timeout, counted from the handshake's end.
  PeerAuthorization authorize_peer;
  // Names a failed handshake's reason for counters and logs (e.g. the Connect module's
  // classify_handshake_failure: "no_certificate", "untrusted_chain"). Empty: OpenSSL's
  // reason ("peer did not return a certificate", "certificate verify failed"). Called
  // on the connection's io thread; keep the variety of results small.
  std::function<std::string(SSL* session, const boost::system::error_code& error)> describe_failure;
};

// How a server's TLS handshakes ended, for metrics (ServerObserver) and tests.
enum class TlsHandshakeResult {
  accepted,   // handshake done, peer accepted
  refused,    // handshake done, accept_peer refused the peer
  failed,     // the handshake failed (no/untrusted certificate, old protocol, not TLS)
  timed_out,  // not complete within handshake_timeout
};
// "accepted", "refused", "failed", "timed_out": log values and metric labels.
std::string_view to_string(TlsHandshakeResult result) noexcept;

struct ClientTls {
  TlsContextProvider context;  // required
  // Sent as SNI when not empty. Not checked against the certificate: that is
  // verify_peer's business (Connect names services by SPIFFE ID, not by host name).
  std::string server_name;
  // Empty: every server the context's own verification lets through is accepted.
  // A refused server fails the call with ClientErrc::peer_rejected.
  PeerCheck verify_peer;
  // Connections are pooled per (host:port, pool_key): give TLS configurations that
  // present another certificate or accept other servers distinct keys. Empty means
  // server_name.
  std::string pool_key;
  // Names a failed handshake's reason, as ServerTls::describe_failure does (e.g.
  // "expired_certificate" for a server whose leaf has expired); it leads the
  // ClientError's message and goes to on_handshake. Empty: OpenSSL's reason.
  std::function<std::string(SSL* session, const boost::system::error_code& error)> describe_failure;
  // Told how the handshake of each new connection ended, for counters: accepted (empty
  // reason), failed (describe_failure's reason), refused (verify_peer's reason) or
  // timed_out. Called on the connection's io thread; must not block or throw.
  std::function<void(TlsHandshakeResult result, std::string_view reason)> on_handshake;
};

}  // namespace coromesh::http
