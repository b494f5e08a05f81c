// A callee that accepts and never answers (tests/support/hung_server.hpp), called by a
// real service through a typed client with a bulkhead: the bulkhead bounds what the hung
// callee can hold (connections, coroutine frames, the caller's own requests in flight)
// to its size, the calls over it are refused at once instead of piling up behind the
// deadline, and the caller's other operation, on a healthy callee, keeps answering.
//
// `relay` serves relay_hung (calls `ping` at the hung server: bulkhead 4, 3 s deadline)
// and relay_ok (calls `echo` at a healthy in-process service, its own bulkhead).

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <coromesh/service/service.hpp>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "http_fetch.hpp"
#include "hung_server.hpp"
#include "in_process_service.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct Ping {
  std::int64_t value = 0;
};
BOOST_DESCRIBE_STRUCT(Ping, (), (value))

constexpr int kBulkhead = 4;
COROMESH_OPERATION(ping, GET, "/api/v1/ping", Ping, Ping,
                   CLIENT_QOS(qos::timeout{.per_attempt = 3s, .mode = qos::TimeoutMode::deadline},
                              qos::bulkhead{.max_concurrent = kBulkhead}));
COROMESH_OPERATION(echo, GET, "/api/v1/echo", Ping, Ping,
                   CLIENT_QOS(qos::timeout{.per_attempt = 3s, .mode = qos::TimeoutMode::deadline},
                              qos::bulkhead{.max_concurrent = kBulkhead}));
COROMESH_OPERATION(relay_hung, GET, "/api/v1/relay_hung", Ping, Ping);
COROMESH_OPERATION(relay_ok, GET, "/api/v1/relay_ok", Ping, Ping);

using coromesh::testing::in_process;

class HungCallee : public ::testing::Test {
 protected:
  void SetUp() override {
    healthy = std::make_unique<coromesh::Service>(in_process("healthy"));
    healthy->serve(echo, [](Ping in) -> asio::awaitable<Ping> { co_return in; });
    healthy->start();
    relay = std::make_unique<coromesh::Service>(in_process("relay"));
    auto& hung_client = relay->client(ping, {.host = hung.host(), .port = hung.port()});
    auto& healthy_client = relay->client(echo, {.host = "127.0.0.1", .port = healthy->port()});
    relay->serve(relay_hung, [&hung_client](Ping in) -> asio::awaitable<Ping> {
      co_return co_await hung_client.execute(in);
    });
    relay->serve(relay_ok, [&healthy_client](Ping in) -> asio::awaitable<Ping> {
      co_return co_await healthy_client.execute(in);
    });
    relay->start();
  }
  void TearDown() override {
    relay->request_shutdown();
    relay->wait();
    healthy->request_shutdown();
    healthy->wait();
  }

  struct Timed {
    coromesh::testing::FetchResult result;
    std::chrono::milliseconds elapsed;
  };
  Timed get(const std::string& target) {
    const auto start = std::chrono::steady_clock::now();
    auto result = coromesh::testing::http_fetch("127.0.0.1", relay->port(), target);
    return {std::move(result), std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - start)};
  }
  std::string metrics() {
    return coromesh::testing::http_fetch("127.0.0.1", relay->port(), "/metrics").body;
  }

  const coromesh::testing::HungServer hung;
  std::unique_ptr<coromesh::Service> healthy, relay;
};

TEST_F(HungCallee, ABulkheadBoundsWhatItHoldsAndTheOtherOperationKeepsAnswering) {
  constexpr int kCalls = 5 * kBulkhead;
  // All at once: each on its own connection to the relay.
  std::vector<std::future<Timed>> hung_calls;
  for (int i = 0; i < kCalls; ++i) {
    hung_calls.push_back(std::async(std::launch::async, [this, i] {
      return get("/api/v1/relay_hung?value=" + std::to_string(i));
    }));
  }
  // While the admitted calls hang (until their 3 s deadline), the other operation answers.
  std::this_thread::sleep_for(300ms);
  std::vector<std::chrono::milliseconds> ok_latency;
  for (int i = 0; i < 10; ++i) {
    const auto [result, elapsed] = get("/api/v1/relay_ok?value=" + std::to_string(i));
    EXPECT_EQ(result.status, 200) << result.body;
    ok_latency.push_back(elapsed);
  }
  const int held = hung.accepted();
  int refused = 0, timed_out = 0;
  std::chrono::milliseconds slowest_refusal{0};
  for (auto& call : hung_calls) {
    const auto [result, elapsed] = call.get();
    const auto error = result.status >= 400
                           ? std::string(boost::json::parse(result.body).at("error").as_string())
                           : std::string();
    if (result.status == 503 && error == "bulkhead_full") {
      ++refused;
      slowest_refusal = std::max(slowest_refusal, elapsed);
    } else if (result.status == 504 && error == "deadline_exceeded") {
      ++timed_out;
      EXPECT_GE(elapsed, 2900ms) << "an admitted call ends at its deadline";
    } else {
      ADD_FAILURE() << "unexpected answer: " << result.status << " " << result.body;
    }
  }
  const auto slowest_ok = *std::max_element(ok_latency.begin(), ok_latency.end());
  std::cout << "[ hung callee ] " << kCalls << " calls at once, bulkhead " << kBulkhead
            << ": the hung callee held " << held << " connections; " << timed_out
            << " timed out at 3 s, " << refused << " refused (slowest refusal "
            << slowest_refusal.count() << " ms); the other operation: 10 of 10 answered, slowest "
            << slowest_ok.count() << " ms\n";
  EXPECT_EQ(held, kBulkhead) << "the bulkhead bounds the connections a hung callee holds";
  EXPECT_EQ(timed_out, kBulkhead);
  EXPECT_EQ(refused, kCalls - kBulkhead);
  EXPECT_LT(slowest_refusal, 1500ms) << "refused at once, not after waiting for the deadline";
  EXPECT_LT(slowest_ok, 1500ms) << "the other operation waited behind the hung one";
  // The refusals are the relay's own (its bulkhead), counted as such, and the hung
  // callee's timeouts as the callee's failures.
  const auto text = metrics();
  EXPECT_NE(text.find(R"(reason="bulkhead_full")"), std::string::npos) << text.substr(0, 4000);
}

}  // namespace
