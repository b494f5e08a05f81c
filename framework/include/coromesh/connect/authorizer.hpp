#pragma once

// May this client call this service? Asked of the local agent
// (POST /v1/agent/connect/authorize), which matches the intentions it keeps in sync.
//
// Why ask the agent rather than match intentions locally: the agent's answer is Consul's
// own matching (precedence, wildcards, the default policy), so our sidecar
// and `consul connect proxy` can never disagree; the agent answers from memory, and a
// short cache keeps that off the path of most connections.
//
// Cache: each (target, client SPIFFE URI) decision is reused for `ttl` (1s by default,
// so a new intention applies within about a second), at most `max_entries` pairs, least
// recently used evicted first. The certificate serial is passed on but is not part of
// the key: intentions name services, not certificates. Concurrent callers asking for a
// pair that is not cached share one agent call.
//
// When the agent cannot decide — unreachable, timed out, 5xx, 429 (too busy for us), or an
// answer that does not decode — the last decision known for that pair is returned,
// however old, marked `stale`: an outage neither opens the mesh nor cuts the callers it
// already knew. A pair never decided before is denied with reason
// `authorization_unavailable` (failing closed where there is nothing to go on). Any other
// 4xx (a request the agent refuses, e.g. an ACL token without rights:
// consul::ConsulError::caller_fault()) is a configuration error, not an outage: denied
// with reason `authorization_error`, cache untouched; except a 403 for a pair decided
// before (a token revoked at run time), answered like an outage with the last decision.
//
// Threads: bound to the AgentClient's executor; call authorize() from coroutines on it.
// `consul` must outlive the authorizer; destroy it only when no authorize() is running.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "coromesh/connect/spiffe_id.hpp"
#include "coromesh/consul/agent_client.hpp"
#include "coromesh/http/tls.hpp"

namespace coromesh::connect {

struct AuthorizerOptions {
  std::chrono::milliseconds ttl = std::chrono::seconds(1);
  std::size_t max_entries = 4096;
  // Bound of one agent call, passed to the call itself (AgentClient::connect_authorize):
  // past it the call fails as timed out (so counted by the Consul client) and the decision
  // is taken as if the agent were down.
  std::chrono::milliseconds timeout = std::chrono::seconds(2);
  // The clock the TTL is measured on (tests pass a manual one).
  std::function<std::chrono::steady_clock::time_point()> now = &std::chrono::steady_clock::now;
};

struct Decision {
  enum class Source : std::uint8_t {
    agent,        // asked just now
    cache,        // a fresh cached answer
    stale,        // the agent could not decide: the last known answer, past its TTL
    unavailable,  // the agent could not decide and there is no answer to fall back on
    error,        // the agent refused the request (4xx)
  };
  bool authorized = false;
  // Consul's reason; for Source::unavailable "authorization_unavailable", for
  // Source::error "authorization_error" (plus the agent's complaint in `detail`).
  std::string reason;
  Source source = Source::unavailable;
  std::string detail;  // why the agent could not decide (stale, unavailable, error)
};
std::string_view to_string(Decision::Source source) noexcept;

// The refusal's reason as a handshake metric or log counts it, by whose verdict it was:
// "unauthorized" when the intentions denied the caller (asked, cached or stale), else the
// decision's own reason, "authorization_unavailable" or "authorization_error": an agent
// that could not decide is not a denied caller.
std::string_view refusal_reason(const Decision& decision) noexcept;

// What a caller that `decision` refuses is told over its verified session, in HTTP terms
// (http::PeerVerdict::Answer): 403 `unauthorized` with Consul's reason when the intentions
// deny it — the caller's mesh configuration to fix, which no retry cures; 503
// `authorization_unavailable` when the agent could not decide (another instance may be
// able to). The agent's own complaint is the callee's business and stays in its log.
http::PeerVerdict::Answer refusal_answer(const Decision& decision, std::string_view target_service,
                                         const SpiffeId& client);

class Authorizer {
 public:
  explicit Authorizer(consul::AgentClient& consul, AuthorizerOptions options = {});

  // Whether `client` may call `target_service`. Throws only when the calling coroutine is
  // cancelled (boost::system::system_error, operation_aborted). Every argument is taken
  // by value: the coroutine starts later than the call, a reference could dangle.
  boost::asio::awaitable<Decision> authorize(std::string target_service, SpiffeId client,
                                             std::string client_cert_serial);

  std::size_t cache_size() const noexcept { return cache_.size(); }

 private:
  struct Entry {
    consul::AuthorizeResult result;
    std::chrono::steady_clock::time_point fetched;
    std::list<std::string>::iterator recency;  // position in recency_
  };

  // One agent call whose answer several callers may wait for; `done` never expires by
  // itself and is cancelled when the call ends (with a decision or, if the asking
  // caller was cancelled, without one).
  struct Pending {
    explicit Pending(const boost::asio::any_io_executor& executor)
        : done(executor, boost::asio::steady_timer::time_point::max()) {}
    boost::asio::steady_timer done;
    std::optional<Decision> decision;
  };

  // The agent's answer for `key`, or the fallback when it cannot give one. The
  // references point into the calling authorize() frame, which outlives this call.
  boost::asio::awaitable<Decision> ask_agent(const std::string& key,
                                             const std::string& target_service,
                                             const std::string& client_uri,
                                             const std::string& client_cert_serial);
  Decision fall_back(const std::string& key, std::string why);
  void remember(const std::string& key, const consul::AuthorizeResult& result);

  consul::AgentClient& consul_;
  AuthorizerOptions options_;
  std::unordered_map<std::string, Entry> cache_;
  std::list<std::string> recency_;  // keys, most recently used first
  std::unordered_map<std::string, std::shared_ptr<Pending>> in_flight_;
};

}  // namespace coromesh::connect
