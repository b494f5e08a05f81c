#include "coromesh/consul/http_agent_client.hpp"

#include <gtest/gtest.h>

#include "consul_test_fixture.hpp"

namespace coromesh::consul {
namespace {

using namespace std::chrono_literals;
using AgentClientIntegration = ConsulIntegration;

std::vector<std::string> ids(const std::vector<ServiceInstance>& instances) {
  std::vector<std::string> out;
  for (const auto& instance : instances) {
    out.push_back(instance.id);
  }
  return out;
}

TEST_F(AgentClientIntegration, RegistrationHttpCheckMaintenanceAndDeregistration) {
  // The check probes the agent itself, so it turns passing without a server of ours.
  ServiceRegistration web{
      .id = "it-web-1",
      .name = "it-web",
      .tags = {"metrics"},
      .address = "127.0.0.1",
      .port = 18080,
      .meta = {{"metrics_path", "/metrics"}},
      .check = HttpCheck{.url = "http://" + consul_.http_address() + "/v1/status/leader",
                         .interval = 1s,
                         .timeout = 1s}};
  run([&]() -> asio::awaitable<void> {
    co_await agent_.register_service(web);
    auto held = co_await agent_.agent_service("it-web-1");
    EXPECT_TRUE(held);
    if (held) {
      EXPECT_EQ(held->name, "it-web");
      EXPECT_EQ(held->port, 18080);
      EXPECT_EQ(held->tags, std::vector<std::string>{"metrics"});
      EXPECT_EQ(held->meta, web.meta);
    }

    auto passing = [&]() -> asio::awaitable<bool> {
      auto result = co_await agent_.health_service("it-web", true, {});
      co_return ids(result.value) == std::vector<std::string>{"it-web-1"};
    };
    EXPECT_TRUE(co_await eventually_async(passing, 10s)) << "the HTTP check never passed";
    auto all = co_await agent_.health_service("it-web", false, {});
    EXPECT_EQ(all.value.size(), 1u);
    if (!all.value.empty()) {
      const auto& instance = all.value[0];
      EXPECT_EQ(instance.status, HealthStatus::passing);
      EXPECT_EQ(instance.address, "127.0.0.1");
      EXPECT_EQ(instance.node, "coromesh-test");
      EXPECT_EQ(instance.meta.at("metrics_path"), "/metrics");
    }
    EXPECT_GT(all.index, 0u);

    // Maintenance is immediate: no polling.
    co_await agent_.set_maintenance("it-web-1", true, "draining for shutdown");
    EXPECT_TRUE((co_await agent_.health_service("it-web", true, {})).value.empty());
    auto drained = co_await agent_.health_service("it-web", false, {});
    EXPECT_EQ(drained.value.size(), 1u);
    if (!drained.value.empty()) {
      EXPECT_EQ(drained.value[0].status, HealthStatus::critical);
    }
    co_await agent_.set_maintenance("it-web-1", false, "");
    EXPECT_TRUE(co_await passing());

    co_await agent_.deregister_service("it-web-1");
    EXPECT_FALSE(co_await agent_.agent_service("it-web-1"));
    EXPECT_TRUE((co_await agent_.health_service("it-web", false, {})).value.empty());
    co_await agent_.deregister_service("it-web-1");  // already gone: not an error
  }());
  EXPECT_EQ(agent_.http_client().connections_opened(), 1u) << "one keep-alive connection";
}

TEST_F(AgentClientIntegration, TtlChecksAndConnectProxies) {
  run([&]() -> asio::awaitable<void> {
    // (Named, not braced temporaries, in co_await expressions: g++ 12 destroys those
    // twice.)
    ServiceRegistration ttl{
        .id = "it-ttl-1", .name = "it-ttl", .port = 9000, .check = TtlCheck{.ttl = 30s}};
    co_await agent_.register_service(ttl);
    auto status = [&]() -> asio::awaitable<std::optional<HealthStatus>> {
      auto result = co_await agent_.health_service("it-ttl", false, {});
      if (result.value.size() != 1) {
        co_return std::nullopt;
      }
      co_return result.value[0].status;
    };
    EXPECT_EQ(co_await status(), HealthStatus::critical) << "a TTL check starts critical";
    auto check = ttl_check_id("it-ttl-1");
    co_await agent_.pass_ttl(check, "all good");
    EXPECT_EQ(co_await status(), HealthStatus::passing);
    co_await agent_.warn_ttl(check, "slow");
    EXPECT_EQ(co_await status(), HealthStatus::warning);
    co_await agent_.fail_ttl(check, "down");
    EXPECT_EQ(co_await status(), HealthStatus::critical);

    ServiceRegistration sidecar{.id = "it-ttl-1-sidecar-proxy",
                                .name = "it-ttl-sidecar-proxy",
                                .address = "127.0.0.1",
                                .port = 21000,
                                .kind = "connect-proxy",
                                .proxy = ProxyConfig{.destination_service_name = "it-ttl",
                                                     .destination_service_id = "it-ttl-1",
                                                     .local_service_address = "127.0.0.1",
                                                     .local_service_port = 9000}};
    co_await agent_.register_service(sidecar);
    auto proxies = co_await agent_.health_connect("it-ttl", false, {});
    EXPECT_EQ(ids(proxies.value), std::vector<std::string>{"it-ttl-1-sidecar-proxy"});
    if (!proxies.value.empty()) {
      EXPECT_EQ(proxies.value[0].kind, "connect-proxy");
      EXPECT_EQ(proxies.value[0].port, 21000);
    }
  }());
}

TEST_F(AgentClientIntegration, KvRoundTripAndABlockingQuery) {
  run([&]() -> asio::awaitable<void> {
    auto missing = co_await agent_.kv_get("it/config/add", {});
    EXPECT_FALSE(missing.value);
    EXPECT_GT(missing.index, 0u) << "a missing key still has an index to block on";

    std::string value = "{\"timeout\":\"100ms\"}\n\x01\xff";
    EXPECT_TRUE(co_await agent_.kv_put("it/config/add", value));
    auto stored = co_await agent_.kv_get("it/config/add", {});
    EXPECT_TRUE(stored.value);
    if (stored.value) {
      EXPECT_EQ(stored.value->key, "it/config/add");
      EXPECT_EQ(stored.value->value, value);
      EXPECT_EQ(stored.value->modify_index, stored.index);
    }

    // Nothing changes: the blocking query holds for its wait, then answers the same index.
    auto start = std::chrono::steady_clock::now();
    auto unchanged =
        co_await agent_.kv_get("it/config/add", {.index = stored.index, .wait = 300ms});
    EXPECT_GE(std::chrono::steady_clock::now() - start, 250ms);
    EXPECT_EQ(unchanged.index, stored.index);

    // A change releases it early.
    bool written = false;
    asio::co_spawn(
        ioc_,
        [&]() -> asio::awaitable<void> {
          co_await sleep_for(200ms);
          written = co_await agent_.kv_put("it/config/add", "v2");
        },
        asio::detached);
    start = std::chrono::steady_clock::now();
    auto changed = co_await agent_.kv_get("it/config/add", {.index = stored.index, .wait = 20s});
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_GT(changed.index, stored.index);
    EXPECT_EQ(changed.value ? changed.value->value : "", "v2");
    // The query may return before the writer has its own answer; the writer uses
    // `written`, so it must be done before this frame goes.
    bool done = co_await eventually([&] { return written; }, 5s);
    EXPECT_TRUE(done);
  }());
}

TEST_F(AgentClientIntegration, AgentServiceBlocksOnItsContentHash) {
  ServiceRegistration proxy{
      .id = "it-blocking-proxy",
      .name = "it-blocking-sidecar-proxy",
      .port = 21000,
      .kind = "connect-proxy",
      .proxy = ProxyConfig{.destination_service_name = "it-blocking",
                           .local_service_port = 8080,
                           .upstreams = {{.destination_name = "b", .local_bind_port = 9191}},
                           .config = {{"protocol", "http"}}}};
  run([&]() -> asio::awaitable<void> {
    co_await agent_.register_service(proxy);
    auto first = co_await agent_.agent_service_blocking("it-blocking-proxy", {});
    EXPECT_TRUE(first.value);
    EXPECT_FALSE(first.hash.empty()) << "Consul 1.3+ sends X-Consul-ContentHash";
    if (first.value && first.value->proxy) {
      EXPECT_EQ(first.value->proxy->config.at("protocol"), "http");
    }

    // Unchanged: held for the whole wait, then the same hash. The agent may still be
    // settling a registration it has just taken (seen once under ASan's load: a new hash
    // 1.7 ms later), so a changed hash is followed a few times before the held query counts.
    std::chrono::steady_clock::duration held{};
    HashQueryResult<std::optional<AgentService>> unchanged;
    for (int settling = 0; settling < 3; ++settling) {
      const auto started = std::chrono::steady_clock::now();
      unchanged = co_await agent_.agent_service_blocking("it-blocking-proxy",
                                                         {.hash = first.hash, .wait = 1s});
      held = std::chrono::steady_clock::now() - started;
      if (unchanged.hash == first.hash) {
        break;
      }
      first = unchanged;
    }
    EXPECT_GE(held, 900ms) << "the agent held the query";
    EXPECT_EQ(unchanged.hash, first.hash) << "the hash still changed after 3 answers";

    // A change while the query is held answers it with the new registration.
    auto changed_proxy = proxy;
    changed_proxy.proxy->upstreams.push_back({.destination_name = "c", .local_bind_port = 9192});
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [&]() -> asio::awaitable<void> {
          co_await sleep_for(300ms);
          co_await agent_.register_service(changed_proxy);
        },
        asio::detached);
    // (A re-registration may wake the query more than once on its way: follow the hash.)
    HashQueryResult<std::optional<AgentService>> changed{.value = {}, .hash = first.hash};
    const auto change_started = std::chrono::steady_clock::now();
    for (int answers = 0; answers < 5; ++answers) {
      changed = co_await agent_.agent_service_blocking("it-blocking-proxy",
                                                       {.hash = changed.hash, .wait = 30s});
      if (changed.value && changed.value->proxy && changed.value->proxy->upstreams.size() == 2) {
        break;
      }
    }
    EXPECT_NE(changed.hash, first.hash);
    EXPECT_TRUE(changed.value && changed.value->proxy &&
                changed.value->proxy->upstreams.size() == 2);
    EXPECT_LT(std::chrono::steady_clock::now() - change_started, 10s)
        << "the change answered the held query, long before its 30s wait";

    // A missing service answers at once: no value, no hash.
    co_await agent_.deregister_service("it-blocking-proxy");
    const auto gone = co_await agent_.agent_service_blocking("it-blocking-proxy",
                                                             {.hash = changed.hash, .wait = 30s});
    EXPECT_FALSE(gone.value);
    EXPECT_TRUE(gone.hash.empty());
  }());
}

TEST_F(AgentClientIntegration, UnknownsAndRejectedInput) {
  run([&]() -> asio::awaitable<void> {
    auto unknown = co_await agent_.health_service("it-no-such-service", false, {});
    EXPECT_TRUE(unknown.value.empty());
    EXPECT_GT(unknown.index, 0u);
    EXPECT_FALSE(co_await agent_.agent_service("it-no-such-id"));

    auto rejected = [&](ServiceRegistration registration) -> asio::awaitable<std::string> {
      try {
        co_await agent_.register_service(std::move(registration));
      } catch (const ConsulError& e) {
        EXPECT_EQ(e.status(), 400) << e.what();
        EXPECT_EQ(e.request(), "PUT /v1/agent/service/register");
        co_return e.body_excerpt();
      }
      co_return "accepted";
    };
    ServiceRegistration nameless{.id = "x", .name = ""};
    EXPECT_EQ(co_await rejected(nameless), "Missing service name");
    ServiceRegistration bad_check{.name = "it-bad-check",
                                  .check = HttpCheck{.url = "http://127.0.0.1:1/", .interval = 0s}};
    auto no_interval = co_await rejected(bad_check);
    EXPECT_NE(no_interval.find("Interval must be > 0"), std::string::npos) << no_interval;

    try {
      co_await agent_.pass_ttl("it-no-such-check");
      ADD_FAILURE() << "updating an unknown check succeeded";
    } catch (const ConsulError& e) {
      EXPECT_EQ(e.status(), 404);
      EXPECT_NE(std::string(e.what()).find("Unknown check ID"), std::string::npos) << e.what();
    }
    try {
      co_await agent_.set_maintenance("it-no-such-id", true, "x");
      ADD_FAILURE() << "maintenance of an unknown service succeeded";
    } catch (const ConsulError& e) {
      EXPECT_EQ(e.status(), 404);
    }

    co_await off_loop([&] { consul_.stop(); });
    try {
      co_await agent_.health_service("it-web", false, {});
      ADD_FAILURE() << "a stopped agent answered";
    } catch (const http::ClientError& e) {
      EXPECT_EQ(e.code(), http::ClientErrc::connect_failed);
      EXPECT_NE(std::string(e.what()).find("connect to " + consul_.http_address() + " failed"),
                std::string::npos)
          << e.what();
    }
  }());
}

}  // namespace
}  // namespace coromesh::consul
