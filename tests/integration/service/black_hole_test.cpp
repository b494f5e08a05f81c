// A typed client whose callee is black-holed (its SYNs vanish: tests/support/
// black_hole.hpp), inside a real service: `relay` serves two operations that each call
// `ping` at the black hole. Each attempt ends at its deadline or at the client's connect
// timeout, whichever comes first, never later; the fault is the callee's (a timeout or a
// transport failure: a 5xx for the relay's caller, a failure for the breaker), never
// the caller's.

#include "black_hole.hpp"

#include <gtest/gtest.h>

#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <coromesh/service/fault_classifier.hpp>
#include <coromesh/service/service.hpp>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "http_fetch.hpp"
#include "in_process_service.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using coromesh::qos::FaultClass;

struct Ping {
  std::int64_t value = 0;
};
BOOST_DESCRIBE_STRUCT(Ping, (), (value))

// 150 ms per attempt: the deadline comes before the client's connect timeout (250 ms).
COROMESH_OPERATION(
    ping_short, GET, "/api/v1/ping", Ping, Ping,
    CLIENT_QOS(qos::timeout{.per_attempt = 150ms, .mode = qos::TimeoutMode::deadline},
               qos::retry{.max_attempts = 2, .base_backoff = 1ms, .max_backoff = 2ms}));
// 3 s per attempt: the connect timeout ends each attempt long before.
COROMESH_OPERATION(ping_long, GET, "/api/v1/ping", Ping, Ping,
                   CLIENT_QOS(qos::timeout{.per_attempt = 3s, .mode = qos::TimeoutMode::deadline},
                              qos::retry{
                                  .max_attempts = 2, .base_backoff = 1ms, .max_backoff = 2ms}));
COROMESH_OPERATION(relay_short, GET, "/api/v1/relay_short", Ping, Ping);
COROMESH_OPERATION(relay_long, GET, "/api/v1/relay_long", Ping, Ping);

class BlackHoledCallee : public ::testing::Test {
 protected:
  void SetUp() override {
    relay = std::make_unique<coromesh::Service>(coromesh::testing::in_process("relay"));
    const coromesh::http::Destination hole_address{hole.host(), hole.port()};
    relay_through(relay_short, relay->client(ping_short, hole_address));
    relay_through(relay_long, relay->client(ping_long, hole_address));
    relay->start();
  }

  void TearDown() override {
    relay->request_shutdown();
    relay->wait();
  }

  // Serves `op` by calling `client`, noting how the fault it threw was classified.
  template <class Op, class Client>
  void relay_through(const Op& op, Client& client) {
    relay->serve(op, [this, &client](Ping in) -> asio::awaitable<Ping> {
      std::exception_ptr failure;
      try {
        co_return co_await client.execute(in);
      } catch (...) {
        failure = std::current_exception();
      }
      {
        std::lock_guard lock(mutex);
        classified = coromesh::classify_service_fault(failure).kind;
      }
      std::rethrow_exception(failure);
    });
  }

  struct Timed {
    coromesh::testing::FetchResult result;
    std::chrono::milliseconds elapsed;
  };
  Timed relay_get(const std::string& path) {
    const auto start = std::chrono::steady_clock::now();
    auto result = coromesh::testing::http_fetch("127.0.0.1", relay->port(), path + "?value=1");
    return {std::move(result), std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - start)};
  }
  std::optional<FaultClass> fault_class() {
    std::lock_guard lock(mutex);
    return classified;
  }
  std::string metrics() {
    return coromesh::testing::http_fetch("127.0.0.1", relay->port(), "/metrics").body;
  }

  const coromesh::testing::BlackHole hole;
  std::unique_ptr<coromesh::Service> relay;
  std::mutex mutex;
  std::optional<FaultClass> classified;
};

TEST_F(BlackHoledCallee, EachAttemptEndsAtItsDeadlineAsATimeout) {
  const auto [result, elapsed] = relay_get("/api/v1/relay_short");
  std::cout << "[ black hole ] 2 attempts of 150 ms: " << result.status << " " << result.body
            << " after " << elapsed.count() << " ms\n";
  EXPECT_EQ(result.status, 504) << result.body;
  EXPECT_EQ(boost::json::parse(result.body).at("error").as_string(), "deadline_exceeded");
  EXPECT_EQ(fault_class(), FaultClass::timeout);
  EXPECT_TRUE(coromesh::qos::counts_against_callee(*fault_class()));
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 2s) << "an attempt outlived its 150 ms deadline";
  EXPECT_NE(
      metrics().find(
          R"(coromesh_qos_calls_total{operation="ping_short",result="error",side="client"} 2)"),
      std::string::npos)
      << "both attempts reached the transport and failed there";
}

TEST_F(BlackHoledCallee, AnAttemptWithTimeToSpareEndsAtTheConnectTimeout) {
  const auto [result, elapsed] = relay_get("/api/v1/relay_long");
  std::cout << "[ black hole ] 2 attempts of 3 s, connect timeout 250 ms: " << result.status << " "
            << result.body << " after " << elapsed.count() << " ms\n";
  EXPECT_EQ(result.status, 502) << result.body;
  EXPECT_EQ(boost::json::parse(result.body).at("error").as_string(), "upstream_unavailable");
  EXPECT_NE(result.body.find("connect timeout"), std::string::npos) << result.body;
  EXPECT_EQ(fault_class(), FaultClass::transport) << "nothing was sent: retried, any method";
  EXPECT_TRUE(coromesh::qos::counts_against_callee(*fault_class()));
  EXPECT_GE(elapsed, 490ms);
  EXPECT_LT(elapsed, 2500ms) << "the attempts waited for their 3 s deadline, not 250 ms";
}

}  // namespace
