// A caller whose Consul has not answered yet about the service it calls (Consul slow or
// down, tests/support/hung_server.hpp stands in for it: it accepts and never answers).
// That is the caller's own mesh plumbing, not the callee: the calling operation's
// circuit breaker records nothing, nothing is retried, and the caller's caller is answered
// 503 discovery_unavailable saying Consul has not answered.
//
// `relay` serves relay_whoami, which calls `guarded_whoami` (served by the Consul service
// "whoami", found by discovery) through a client with a breaker that opens on a single
// failure, a retry with a budget that counts every retry, and a preemptive per-attempt
// timeout.

#include <gtest/gtest.h>

#include <boost/asio/awaitable.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <coromesh/service/service.hpp>
#include <memory>
#include <string>

#include "consul_agent.hpp"
#include "http_fetch.hpp"
#include "hung_server.hpp"
#include "in_process_service.hpp"
#include "mesh_test_services.hpp"

namespace coromesh::testing {
namespace {

using namespace std::chrono_literals;

COROMESH_OPERATION(guarded_whoami, GET, "/api/v1/whoami", WhoamiProbe, WhoamiReply,
                   coromesh::served_by("whoami"),
                   CLIENT_QOS(qos::timeout{.per_attempt = 2s},
                              qos::retry{.max_attempts = 3,
                                         .base_backoff = 1ms,
                                         .max_backoff = 4ms,
                                         .budget_ratio = 1.0,
                                         .budget_min_per_second = 0,
                                         .budget_ttl = 10min},
                              qos::circuit_breaker{.window = 2, .minimum_calls = 1}));
COROMESH_OPERATION(relay_whoami, GET, "/api/v1/relay_whoami", WhoamiProbe, WhoamiReply);

constexpr int kCalls = 3;

TEST(DiscoveryUnavailable, IsNotTheCalleesFailureAndTheCallerIsAnswered503) {
  const HungServer silent_consul;
  auto config = in_process("relay");
  config.consul = config::Address{silent_consul.host(), silent_consul.port()};
  Service relay(config);
  auto& client = relay.client(guarded_whoami);
  ASSERT_TRUE(client.transport().options().discovered);
  relay.serve(
      relay_whoami,
      [&client](WhoamiProbe probe, const CallContext& call) -> boost::asio::awaitable<WhoamiReply> {
        co_return co_await client.execute(probe, call);
      });
  relay.start();

  for (int i = 0; i < kCalls; ++i) {
    const auto answer =
        http_fetch("127.0.0.1", relay.port(), "/api/v1/relay_whoami", {.timeout = 30s});
    ASSERT_EQ(answer.status, 503) << "call " << i << ": " << answer.error << answer.body;
    const auto body = boost::json::parse(answer.body).as_object();
    EXPECT_EQ(std::string(body.at("error").as_string()), "discovery_unavailable") << answer.body;
    EXPECT_NE(std::string(body.at("reason").as_string()).find("no answer from Consul yet"),
              std::string::npos)
        << answer.body;
  }

  const auto objects = client.qos().objects();
  ASSERT_TRUE(objects->breaker && objects->budget);
  EXPECT_EQ(objects->breaker->state(), qos::CircuitBreaker::State::closed);
  EXPECT_EQ(objects->breaker->snapshot().failures, 0U);
  EXPECT_EQ(objects->budget->available(), static_cast<std::uint64_t>(kCalls))
      << "one deposit per call, no retry taken from it";

  relay.request_shutdown();
  EXPECT_EQ(relay.wait(), 0);
}

// Served by "nobody", which Consul knows no instance of.
COROMESH_OPERATION(nobody_whoami, GET, "/api/v1/whoami", WhoamiProbe, WhoamiReply,
                   coromesh::served_by("nobody"),
                   CLIENT_QOS(qos::timeout{.per_attempt = 2s},
                              qos::retry{
                                  .max_attempts = 2, .base_backoff = 1ms, .max_backoff = 2ms}));
COROMESH_OPERATION(relay_nobody, GET, "/api/v1/relay_nobody", WhoamiProbe, WhoamiReply);

// Consul answered, and the callee has no passing instance: the callee is down (transport,
// as before: retried, counted by its breaker), and the caller's caller is answered as a
// sidecar answers the same cause (proxy/README.md: 503 no_endpoint, Envoy's "no healthy
// upstream"), so that a caller sees one status for it whichever mesh it runs in. It was
// answered 502 upstream_unavailable here and 503 no_endpoint through a sidecar.
TEST(NoPassingInstance, IsAnswered503NoEndpointAsTheSidecarAnswersIt) {
  const ConsulAgent consul;
  auto config = in_process("relay");
  config.consul = config::Address{"127.0.0.1", consul.http_port()};
  Service relay(config);
  auto& client = relay.client(nobody_whoami);
  ASSERT_TRUE(client.transport().options().discovered);
  relay.serve(
      relay_nobody,
      [&client](WhoamiProbe probe, const CallContext& call) -> boost::asio::awaitable<WhoamiReply> {
        co_return co_await client.execute(probe, call);
      });
  relay.start();
  const auto answer =
      http_fetch("127.0.0.1", relay.port(), "/api/v1/relay_nobody", {.timeout = 30s});
  EXPECT_EQ(answer.status, 503) << answer.error << answer.body;
  EXPECT_NE(answer.body.find("\"no_endpoint\""), std::string::npos) << answer.body;
  EXPECT_NE(answer.body.find("no passing instance"), std::string::npos) << answer.body;
  relay.request_shutdown();
  EXPECT_EQ(relay.wait(), 0);
}

}  // namespace
}  // namespace coromesh::testing
