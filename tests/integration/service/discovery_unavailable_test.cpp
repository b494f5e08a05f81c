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

}  // namespace
}  // namespace coromesh::testing
