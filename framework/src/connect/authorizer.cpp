#include "coromesh/connect/authorizer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <exception>

#include "coromesh/consul/error.hpp"
#include "coromesh/log/logger.hpp"

namespace coromesh::connect {

namespace asio = boost::asio;

std::string_view to_string(Decision::Source source) noexcept {
  switch (source) {
    case Decision::Source::agent:
      return "agent";
    case Decision::Source::cache:
      return "cache";
    case Decision::Source::stale:
      return "stale";
    case Decision::Source::unavailable:
      return "unavailable";
    case Decision::Source::error:
      return "error";
  }
  return "unavailable";
}

namespace {

bool decided_by_intentions(const Decision& decision) noexcept {
  return decision.source != Decision::Source::unavailable &&
         decision.source != Decision::Source::error;
}

}  // namespace

std::string_view refusal_reason(const Decision& decision) noexcept {
  if (decided_by_intentions(decision) || decision.reason.empty()) {
    return "unauthorized";
  }
  return decision.reason;
}

http::PeerVerdict::Answer refusal_answer(const Decision& decision, std::string_view target_service,
                                         const SpiffeId& client) {
  if (!decided_by_intentions(decision)) {
    return {.status = 503,
            .code = "authorization_unavailable",
            .reason = std::string(target_service) + " could not ask Consul whether " +
                      client.service + " may call it; retry later or another instance"};
  }
  return {.status = 403,
          .code = "unauthorized",
          .reason = std::string(target_service) + " does not accept calls from " + client.service +
                    ": " + (decision.reason.empty() ? "denied by Consul" : decision.reason)};
}

Authorizer::Authorizer(consul::AgentClient& consul, AuthorizerOptions options)
    : consul_(consul), options_(std::move(options)) {
  if (options_.max_entries == 0) {
    options_.max_entries = 1;  // a cache that cannot hold the last decision holds nothing
  }
}

asio::awaitable<Decision> Authorizer::authorize(std::string target_service, SpiffeId client,
                                                std::string client_cert_serial) {
  auto client_uri = client.uri();
  std::string key = target_service + '\n' + client_uri;
  if (auto it = cache_.find(key);
      it != cache_.end() && options_.now() - it->second.fetched < options_.ttl) {
    recency_.splice(recency_.begin(), recency_, it->second.recency);
    co_return Decision{
        it->second.result.authorized, it->second.result.reason, Decision::Source::cache, {}};
  }

  // Callers asking for the same pair meanwhile wait for this call's answer instead of
  // sending their own (a burst of new connections from one client after the TTL).
  for (;;) {
    auto it = in_flight_.find(key);
    if (it == in_flight_.end()) {
      break;
    }
    auto pending = it->second;
    co_await pending->done.async_wait(asio::as_tuple(asio::use_awaitable));
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) {
      throw boost::system::system_error(asio::error::operation_aborted);
    }
    if (pending->decision) {
      co_return *pending->decision;
    }
    // The caller that asked was cancelled before the answer: ask again.
  }
  auto pending = std::make_shared<Pending>(co_await asio::this_coro::executor);
  in_flight_.emplace(key, pending);
  // On every way out of this frame, cancellation included: the waiters wake up.
  struct Release {
    Authorizer& self;
    const std::string& key;
    Pending& pending;
    ~Release() {
      if (auto it = self.in_flight_.find(key);
          it != self.in_flight_.end() && it->second.get() == &pending) {
        self.in_flight_.erase(it);
      }
      pending.done.cancel();
    }
  } release{*this, key, *pending};
  pending->decision = co_await ask_agent(key, target_service, client_uri, client_cert_serial);
  co_return *pending->decision;
}

asio::awaitable<Decision> Authorizer::ask_agent(const std::string& key,
                                                const std::string& target_service,
                                                const std::string& client_uri,
                                                const std::string& client_cert_serial) {
  // The bound goes to the call itself, not to a timer racing it: an agent that does not
  // answer then ends the call as a timeout, which the Consul client classifies and counts
  // (coromesh_consul_requests_total{outcome="timeout"}) like any call of its own. A timer
  // here would cancel the call instead, and a hung agent would be counted nowhere.
  consul::AuthorizeResult result;
  std::exception_ptr call_error;
  try {
    result = co_await consul_.connect_authorize(target_service, client_uri, client_cert_serial,
                                                options_.timeout);
  } catch (...) {
    call_error = std::current_exception();
  }

  auto state = co_await asio::this_coro::cancellation_state;
  if (state.cancelled() != asio::cancellation_type::none) {
    throw boost::system::system_error(asio::error::operation_aborted);
  }
  if (call_error) {
    try {
      std::rethrow_exception(call_error);
    } catch (const consul::ConsulError& e) {
      if (e.status() == 403 && cache_.contains(key)) {
        // The token was revoked (or lost a right) at run time: callers already decided
        // keep their last decision, as in an outage, until a valid token is back.
        co_return fall_back(key, e.what());
      }
      if (e.caller_fault()) {
        log::write_limited(
            log::Level::warn, "connect.authorize.refused", target_service,
            {{"target", target_service}, {"client", client_uri}, {"error", e.what()}});
        co_return Decision{false, "authorization_error", Decision::Source::error, e.what()};
      }
      // 5xx, a 429 (the agent too busy for us), or a 2xx that does not decode.
      co_return fall_back(key, e.what());
    } catch (const std::exception& e) {
      // Transport: unreachable, reset, or no answer within options_.timeout.
      co_return fall_back(key, e.what());
    }
  }
  remember(key, result);
  co_return Decision{result.authorized, result.reason, Decision::Source::agent, {}};
}

Decision Authorizer::fall_back(const std::string& key, std::string why) {
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    log::write_limited(log::Level::warn, "connect.authorize.unavailable", "unavailable",
                       {{"error", why}});
    return Decision{false, "authorization_unavailable", Decision::Source::unavailable,
                    std::move(why)};
  }
  recency_.splice(recency_.begin(), recency_, it->second.recency);
  log::write_limited(log::Level::warn, "connect.authorize.stale", "stale",
                     {{"error", why}, {"authorized", it->second.result.authorized}});
  return Decision{it->second.result.authorized, it->second.result.reason, Decision::Source::stale,
                  std::move(why)};
}

void Authorizer::remember(const std::string& key, const consul::AuthorizeResult& result) {
  auto now = options_.now();
  if (auto it = cache_.find(key); it != cache_.end()) {
    it->second.result = result;
    it->second.fetched = now;
    recency_.splice(recency_.begin(), recency_, it->second.recency);
    return;
  }
  while (cache_.size() >= options_.max_entries) {
    cache_.erase(recency_.back());
    recency_.pop_back();
  }
  recency_.push_front(key);
  cache_.emplace(key, Entry{result, now, recency_.begin()});
}

}  // namespace coromesh::connect
