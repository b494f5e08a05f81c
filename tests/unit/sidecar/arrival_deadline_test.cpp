// The first step of both http-mode listeners: a request's deadline, or the counted
// refusal of one whose caller's deadline was spent on arrival.

#include "src/arrival_deadline.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "coromesh/metrics/registry.hpp"
#include "coromesh/qos/deadline.hpp"

namespace coromesh::sidecar {
namespace {

using namespace std::chrono_literals;

http::Request request_for(std::string target, std::string_view deadline_ms) {
  http::Request request{http::Verb::get, target, 11};
  request.set(qos::kDeadlineHeader, deadline_ms);
  return request;
}

TEST(ArrivalDeadline, ASpentDeadlineIsRefusedAndCountedOnce) {
  metrics::MetricsRegistry registry;
  SidecarMetrics sidecar(registry);
  const ListenerMetrics inbound = sidecar.inbound();
  const SidecarSettings settings;
  auto spent = arrival_deadline(request_for("/x", "0"), settings, inbound);
  ASSERT_TRUE(spent.refusal);
  EXPECT_EQ(spent.refusal->result_int(), 504U);
  EXPECT_NE(spent.refusal->body().find(R"("error":"deadline_exceeded")"), std::string::npos)
      << spent.refusal->body();
  const std::string text = registry.render();
  EXPECT_NE(text.find(R"(coromesh_sidecar_request_failures_total{fault="rejected",)"
                      R"(listener="inbound"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(coromesh_sidecar_inbound_requests_total{code="local"} 1)"),
            std::string::npos)
      << text;
}

TEST(ArrivalDeadline, TimeLeftIsTheRoutesBudgetShortenedByTheCallers) {
  metrics::MetricsRegistry registry;
  SidecarMetrics sidecar(registry);
  const ListenerMetrics upstream = sidecar.upstream("b");
  SidecarSettings settings;
  settings.http_timeout = 30s;
  settings.route_timeouts.push_back(parse_route_timeout("/slow=2m"));
  const auto shortened = arrival_deadline(request_for("/x", "5000"), settings, upstream);
  EXPECT_FALSE(shortened.refusal);
  EXPECT_TRUE(shortened.forwarded.carried);
  EXPECT_LE(shortened.forwarded.deadline.remaining(), 5s);
  const auto routed =
      arrival_deadline(http::Request{http::Verb::get, "/slow/a", 11}, settings, upstream);
  EXPECT_FALSE(routed.refusal);
  EXPECT_FALSE(routed.forwarded.carried);
  EXPECT_GT(routed.forwarded.deadline.remaining(), 30s) << "the route's own timeout, 2m";
  EXPECT_EQ(registry.render().find(R"(fault="rejected",listener="b"} 1)"), std::string::npos);
}

}  // namespace
}  // namespace coromesh::sidecar
