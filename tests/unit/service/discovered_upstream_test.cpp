// What a typed client's attempt tells the load balancer about the endpoint it went to
// (endpoint_outcome), and how an operation names the service that serves it.

#include "coromesh/service/discovered_upstream.hpp"

#include <gtest/gtest.h>

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>
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

}  // namespace
}  // namespace coromesh
