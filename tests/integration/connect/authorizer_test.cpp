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

}  // namespace
}  // namespace coromesh::connect
