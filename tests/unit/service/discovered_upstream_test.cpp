// What a typed client's attempt tells the load balancer about the endpoint it went to
// (endpoint_outcome), and how an operation names the service that serves it.

#include "coromesh/service/discovered_upstream.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <coromesh/consul/http_agent_client.hpp>
#include <coromesh/http/error.hpp>
#include <coromesh/qos/reason.hpp>
#include <coromesh/service/operation.hpp>
#include <coromesh/service/remote_error.hpp>
#include <cstdint>
#include <optional>

namespace coromesh {
namespace {

struct Numbers {
  std::int64_t l = 0;
};
BOOST_DESCRIBE_STRUCT(Numbers, (), (l))

COROMESH_OPERATION(served, GET, "/x", Numbers, std::int64_t, coromesh::served_by("add-svc"),
                   CLIENT_QOS(qos::retry{}));
COROMESH_OPERATION(unserved, GET, "/x", Numbers, std::int64_t);

static_assert(served.service == "add-svc");
static_assert(served.client.count<qos::retry>() == 1, "served_by leaves the QoS lists alone");
static_assert(unserved.service.empty());

TEST(ServedBy, ANameConsulCannotCarryIsADeclarationProblem) {
  constexpr auto bad =
      make_operation<Numbers, std::int64_t>("op", http::Verb::get, "/x", served_by("has space"));
  EXPECT_FALSE(bad.problem().empty());
  const auto error = bad.check();
  EXPECT_NE(std::string(error.text, error.size).find("served_by"), std::string::npos);
  constexpr auto good =
      make_operation<Numbers, std::int64_t>("op", http::Verb::get, "/x", served_by("mod_svc-2"));
  EXPECT_TRUE(good.problem().empty());
}

template <class E>
std::optional<connect::Outcome> outcome_of(E error) {
  return endpoint_outcome(std::make_exception_ptr(std::move(error)));
}

TEST(EndpointOutcome, TheCallersOwn4xxIsTheEndpointsSuccess) {
  EXPECT_EQ(outcome_of(RemoteError(422, "overflow", "")), connect::Outcome::success);
  EXPECT_EQ(outcome_of(RemoteError(429, "rate_limited", "")), connect::Outcome::success);
}

TEST(EndpointOutcome, AnswersWithTheCalleesFailureCountAgainstIt) {
  EXPECT_EQ(outcome_of(RemoteError(503, "bulkhead_full", "")), connect::Outcome::callee_failure);
  EXPECT_EQ(outcome_of(RemoteError(502, "invalid_response", "")), connect::Outcome::callee_failure);
  EXPECT_EQ(outcome_of(http::ClientError(http::ClientErrc::timeout, "")),
            connect::Outcome::callee_failure);
  EXPECT_EQ(outcome_of(http::ClientError(http::ClientErrc::bad_response, "")),
            connect::Outcome::callee_failure);
  EXPECT_EQ(outcome_of(http::ClientError(http::ClientErrc::connection_closed, "")),
            connect::Outcome::callee_failure);
  EXPECT_EQ(outcome_of(http::ClientError(http::ClientErrc::outcome_unknown, "")),
            connect::Outcome::callee_failure);
}

TEST(EndpointOutcome, NothingReachedTheEndpointIsAConnectFailure) {
  for (auto code : {http::ClientErrc::connect_failed, http::ClientErrc::tls_handshake,
                    http::ClientErrc::peer_rejected}) {
    EXPECT_EQ(outcome_of(http::ClientError(code, "")), connect::Outcome::connect_failure);
  }
}

TEST(EndpointOutcome, CancellationAndLocalRefusalsAreNobodysFault) {
  EXPECT_EQ(outcome_of(boost::system::system_error(boost::asio::error::operation_aborted)),
            std::nullopt);
  EXPECT_EQ(outcome_of(qos::QosRejected("deadline", qos::Reason::deadline_exceeded)), std::nullopt);
  EXPECT_EQ(outcome_of(http::ClientError(http::ClientErrc::discovery_unavailable, "")),
            std::nullopt);
}

// The client's own timer and a preemptive timeout's watchdog both end an attempt at its
// deadline, and either may fire first. When the watchdog won, the client saw a plain
// cancellation and the endpoint that had not answered in time was held to nothing.
TEST(EndpointOutcome, ACancellationOnceTheDeadlineHasPassedIsTheEndpointsTimeout) {
  const auto cancelled =
      std::make_exception_ptr(boost::system::system_error(boost::asio::error::operation_aborted));
  EXPECT_EQ(endpoint_outcome(cancelled, /*attempt_deadline_passed=*/true),
            connect::Outcome::callee_failure);
  EXPECT_EQ(endpoint_outcome(cancelled, /*attempt_deadline_passed=*/false), std::nullopt);
  // Our own refusals stay ours, whenever they come.
  EXPECT_EQ(endpoint_outcome(std::make_exception_ptr(
                                 qos::QosRejected("deadline", qos::Reason::deadline_exceeded)),
                             true),
            std::nullopt);
  EXPECT_EQ(endpoint_outcome(std::make_exception_ptr(
                                 http::ClientError(http::ClientErrc::discovery_unavailable, "")),
                             true),
            std::nullopt);
}

// Before Consul's first answer a call waits for it, racing a timer. A caller cancelling
// that wait (a preemptive timeout, a `||`, the caller going away) cancelled the timer
// too, whose completion was taken for "no answer in time": the call ended as
// discovery_unavailable, a refusal (counted as rejected, a fallback's to answer) instead
// of a cancellation.
TEST(DiscoveredUpstreamEndpoints, CancellingTheWaitForConsulIsACancellation) {
  namespace asio = boost::asio;
  using namespace std::chrono_literals;
  asio::io_context io;
  // Never asked: run() is not spawned, so Consul never answers.
  consul::HttpAgentClient consul(io.get_executor(), {.address = "127.0.0.1:1"});
  DiscoveredUpstream upstream(consul, {.service = "add-svc"});
  asio::cancellation_signal cancel;
  std::optional<std::exception_ptr> outcome;
  asio::co_spawn(io, upstream.endpoints(std::chrono::steady_clock::now() + 30s),
                 asio::bind_cancellation_slot(
                     cancel.slot(), [&](std::exception_ptr error, DiscoveredUpstream::Snapshot) {
                       outcome = error;
                     }));
  asio::steady_timer soon(io, 20ms);
  soon.async_wait(
      [&](const boost::system::error_code&) { cancel.emit(asio::cancellation_type::terminal); });
  io.run_for(10s);
  ASSERT_TRUE(outcome.has_value()) << "the wait did not end within 10s";
  ASSERT_TRUE(*outcome) << "a cancelled wait ended as if Consul had not answered in time";
  try {
    std::rethrow_exception(*outcome);
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), asio::error::operation_aborted) << e.what();
  }
}

}  // namespace
}  // namespace coromesh
