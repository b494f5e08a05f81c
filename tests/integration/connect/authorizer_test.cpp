// The authorizer against a real agent: dev mode allows by default, a deny intention is
// seen once the cached answer expires.

#include "coromesh/connect/authorizer.hpp"

#include "connect_fixture.hpp"

namespace coromesh::connect {
namespace {

using AuthorizerIntegration = ConnectIntegration;

TEST_F(AuthorizerIntegration, FollowsIntentionsWithinTheCacheTtl) {
  Authorizer authorizer(agent_, {.ttl = 1s});
  run([&]() -> asio::awaitable<void> {
    auto roots = co_await agent_.connect_ca_roots({});
    SpiffeId a{roots.value.trust_domain, "default", "dc1", "a"};
    auto first = co_await authorizer.authorize("b", a, "01");
    EXPECT_TRUE(first.authorized) << "dev mode allows by default: " << first.reason;
    EXPECT_EQ(first.source, Decision::Source::agent);

    auto created = consul_.api("PUT", "/v1/connect/intentions/exact?source=a&destination=b",
                               R"({"Action": "deny"})");
    EXPECT_EQ(created.status, 200) << created.body << created.error;

    auto cached = co_await authorizer.authorize("b", a, "01");
    EXPECT_TRUE(cached.authorized) << "still the cached answer";
    EXPECT_EQ(cached.source, Decision::Source::cache);

    co_await consul::sleep_for(1100ms);
    auto denied = co_await authorizer.authorize("b", a, "01");
    EXPECT_FALSE(denied.authorized) << denied.reason;
    EXPECT_EQ(denied.source, Decision::Source::agent);

    SpiffeId other{roots.value.trust_domain, "default", "dc1", "x"};
    EXPECT_TRUE((co_await authorizer.authorize("b", other, "02")).authorized)
        << "the intention names a only";
  }());
}

TEST_F(AuthorizerIntegration, KeepsTheLastDecisionWhileTheAgentIsDown) {
  Authorizer authorizer(agent_, {.ttl = 1s, .timeout = 1s});
  run([&]() -> asio::awaitable<void> {
    auto roots = co_await agent_.connect_ca_roots({});
    SpiffeId a{roots.value.trust_domain, "default", "dc1", "a"};
    SpiffeId never{roots.value.trust_domain, "default", "dc1", "never-seen"};
    EXPECT_TRUE((co_await authorizer.authorize("b", a, "01")).authorized);

    co_await consul::off_loop([&] { consul_.stop(); });
    co_await consul::sleep_for(1100ms);
    auto stale = co_await authorizer.authorize("b", a, "01");
    EXPECT_TRUE(stale.authorized);
    EXPECT_EQ(stale.source, Decision::Source::stale) << stale.detail;
    auto unknown = co_await authorizer.authorize("b", never, "03");
    EXPECT_FALSE(unknown.authorized);
    EXPECT_EQ(unknown.reason, "authorization_unavailable");
  }());
}

// A hung agent (frozen: the kernel accepts, nothing answers) is an outage for the
// authorizer once its timeout has passed, and for the metrics a call to Consul that timed
// out: coromesh_consul_requests_total counts it once, with the outcome `timeout`, as the
// Consul client classifies it. (The authorizer's own timer used to cancel the call,
// which then counted nowhere.)
TEST_F(AuthorizerIntegration, AHungAgentIsCountedAsATimedOutConsulCall) {
  Authorizer authorizer(agent_, {.ttl = 1s, .timeout = 500ms});
  run([&]() -> asio::awaitable<void> {
    auto roots = co_await agent_.connect_ca_roots({});
    SpiffeId a{roots.value.trust_domain, "default", "dc1", "a"};
    const auto before = agent_.request_counts();
    consul_.freeze();
    auto decision = co_await authorizer.authorize("b", a, "01");
    consul_.thaw();
    EXPECT_FALSE(decision.authorized);
    EXPECT_EQ(decision.source, Decision::Source::unavailable) << decision.detail;
    const auto after = agent_.request_counts();
    std::uint64_t counted = 0;
    for (std::size_t i = 0; i < after.size(); ++i) {
      counted += after[i] - before[i];
    }
    EXPECT_EQ(counted, 1u) << "the authorize call was not counted in consul_requests_total";
    const auto timeout = static_cast<std::size_t>(consul::RequestOutcome::timeout);
    EXPECT_EQ(after[timeout] - before[timeout], 1u) << "not counted as a timeout";
    EXPECT_NE(decision.detail.find("timed out"), std::string::npos) << decision.detail;
  }());
}

// A 429 is the agent too busy for this client (here: past its per-client connection
// limit), not a refusal of the request: like an outage, a caller decided before keeps
// its last decision, instead of being refused with authorization_error.
class AuthorizerOnALimitedAgent : public ConnectIntegration {
 protected:
  AuthorizerOnALimitedAgent()
      : ConnectIntegration({.extra_config = "limits { http_max_conns_per_client = 1 }"}) {}
};

TEST_F(AuthorizerOnALimitedAgent, A429KeepsTheLastDecisionAsAnOutageWould) {
  auto now = std::chrono::steady_clock::now();
  Authorizer authorizer(agent_, {.ttl = 1s, .now = [&] { return now; }});
  asio::ip::tcp::socket other(ioc_);
  run([&]() -> asio::awaitable<void> {
    // The fixture's own last connection may still count against the limit for a moment.
    std::string trust_domain;
    auto read_roots = [&]() -> asio::awaitable<bool> {
      try {
        trust_domain = (co_await agent_.connect_ca_roots({})).value.trust_domain;
      } catch (const consul::ConsulError&) {
      }
      co_return !trust_domain.empty();
    };
    EXPECT_TRUE(co_await consul::eventually_async(read_roots, 5s));
    SpiffeId a{trust_domain, "default", "dc1", "a"};
    auto first = co_await authorizer.authorize("b", a, "01");
    EXPECT_TRUE(first.authorized);
    EXPECT_EQ(first.source, Decision::Source::agent) << first.detail;

    agent_.close_idle();  // our next call needs a new connection...
    EXPECT_TRUE(consul::take_the_only_connection(consul_, other));  // ...which gets a 429
    now += 2s;  // past the TTL: the agent is asked again
    auto busy = co_await authorizer.authorize("b", a, "01");
    EXPECT_TRUE(busy.authorized) << busy.reason << ": " << busy.detail;
    EXPECT_EQ(busy.source, Decision::Source::stale) << busy.detail;
    EXPECT_NE(busy.detail.find("429"), std::string::npos) << busy.detail;
  }());
}

}  // namespace
}  // namespace coromesh::connect
