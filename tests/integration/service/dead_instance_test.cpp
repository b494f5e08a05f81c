// An instance Consul still lists as passing but whose process is gone (it crashed, and
// its check has not failed yet): every connect to it is refused. A call that picked it
// sent nothing, so the typed client tries another instance at once, for any method: a
// POST with no retry declared succeeds, and is received exactly once. The sidecar's
// http mode does the same (proxy/src/upstream_listener.hpp), as Envoy's
// reset-before-request retry does.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <coromesh/service/service.hpp>
#include <memory>
#include <string>
#include <utility>

#include "consul_agent.hpp"
#include "http_fetch.hpp"
#include "mesh_test_services.hpp"
#include "test_env.hpp"

namespace coromesh::testing {
namespace {

using namespace std::chrono_literals;

struct Entry {
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(Entry, (), (amount))

struct Recorded {
  std::int64_t entries = 0;
};
BOOST_DESCRIBE_STRUCT(Recorded, (), (entries))

// A POST with no retry: a retry could record the entry twice.
COROMESH_OPERATION(record, POST, "/api/v1/record", Entry, Recorded, coromesh::served_by("ledger"));

// The POST with a retry declared, without the non_idempotent opt-in: sent again only when
// it never reached the ledger (a refused connect), never after it may have run.
COROMESH_OPERATION(record_retried, POST, "/api/v1/record", Entry, Recorded,
                   CLIENT_QOS(qos::retry{
                       .max_attempts = 3, .base_backoff = 1ms, .max_backoff = 2ms}));

// A GET the ledger always fails with 503, retried: each retry's first pick is an
// instance an earlier attempt tried, as every instance was by then.
COROMESH_OPERATION(audit, GET, "/api/v1/audit", Entry, Recorded, coromesh::served_by("ledger"),
                   CLIENT_QOS(qos::retry{
                       .max_attempts = 3, .base_backoff = 1ms, .max_backoff = 2ms}));

class DeadInstance : public ::testing::Test {
 protected:
  void SetUp() override {
    ledger_ = std::make_unique<Service>(
        mesh_service_config(consul_, "ledger", config::MeshMode::sidecar));
    ledger_->serve(record, [this](Entry entry) -> boost::asio::awaitable<Recorded> {
      const auto entries = ++received_;
      if (entry.amount < 0) {  // received, and failed after it may have taken effect
        throw http::HttpError(http::Status::service_unavailable, "busy", "failing on purpose");
      }
      co_return Recorded{entries};
    });
    ledger_->serve(audit, [this](Entry) -> boost::asio::awaitable<Recorded> {
      ++audits_;
      throw http::HttpError(http::Status::service_unavailable, "busy", "failing on purpose");
      co_return Recorded{};
    });
    ledger_->start();
    // The crashed instance: registered without a check, so passing, on a port nothing
    // listens on.
    const auto registered = consul_.api(
        "PUT", "/v1/agent/service/register",
        R"({"ID": "ledger-crashed", "Name": "ledger", "Address": "127.0.0.1", "Port": )" +
            std::to_string(free_port()) + "}");
    ASSERT_EQ(registered.status, 200) << registered.body;
    auto config = mesh_service_config(consul_, "bookkeeper", config::MeshMode::sidecar);
    config.consul_register = false;
    caller_ = std::make_unique<Service>(config);
    caller_->start();
    ASSERT_TRUE(wait_until(
        [&] {
          const auto answer = consul_.api("GET", "/v1/health/service/ledger?passing");
          return answer.status == 200 && boost::json::parse(answer.body).as_array().size() == 2;
        },
        30s))
        << "both instances passing in Consul";
  }

  void TearDown() override {
    for (auto* service : {caller_.get(), ledger_.get()}) {
      if (service != nullptr) {
        service->request_shutdown();
        service->wait();
      }
    }
  }

  // Makes `calls` calls of `record` with `amount`; returns how many failed, and the first
  // failure's message.
  std::pair<int, std::string> record_many(int calls, std::int64_t amount) {
    auto& client = caller_->client(record);
    int failed = 0;
    std::string first_failure;
    for (int i = 0; i < calls; ++i) {
      auto future = boost::asio::co_spawn(
          caller_->pool().executor(0),
          [&client, amount]() -> boost::asio::awaitable<Recorded> {
            co_return co_await client.execute({amount});
          },
          boost::asio::use_future);
      try {
        future.get();
      } catch (const std::exception& e) {
        if (failed++ == 0) {
          first_failure = e.what();
        }
      }
    }
    return {failed, first_failure};
  }

  ConsulAgent consul_;
  std::atomic<std::int64_t> received_{0};
  std::atomic<int> audits_{0};
  std::unique_ptr<Service> ledger_;
  std::unique_ptr<Service> caller_;
};

TEST_F(DeadInstance, APostThatPickedItIsSentToALiveInstanceOnce) {
  constexpr int kCalls = 20;
  const auto [failed, first_failure] = record_many(kCalls, 1);
  EXPECT_EQ(failed, 0) << "calls failed on the crashed instance, the first with: " << first_failure;
  EXPECT_EQ(received_.load(), kCalls - failed) << "an entry was recorded twice, or lost";
  // The crashed instance is held to its refused connects (toward its outlier ejection).
  bool seen = false;
  for (const auto& endpoint :
       caller_->client(record).transport().options().discovered->endpoint_stats()) {
    if (endpoint.port != ledger_->port()) {
      seen = true;
      EXPECT_GE(endpoint.failures, 1u) << endpoint.key;
      EXPECT_EQ(endpoint.successes, 0u) << endpoint.key;
    }
  }
  EXPECT_TRUE(seen) << "the caller never learned of the crashed instance";
}

// The control: a POST that reached the live instance and failed there (it may have taken
// effect) is not sent anywhere again, whichever instance was picked first.
TEST_F(DeadInstance, APostThatReachedAnInstanceIsNeverSentAgain) {
  constexpr int kCalls = 10;
  const auto [failed, first_failure] = record_many(kCalls, -1);
  EXPECT_EQ(failed, kCalls);
  EXPECT_NE(first_failure.find("503"), std::string::npos) << first_failure;
  EXPECT_EQ(received_.load(), kCalls) << "a POST that reached the ledger was sent again";
}

// Once every instance has been tried, a retry goes to one tried before (the first pick of
// an attempt may be any): the call ends with the last attempt's failure. (It crashed the
// caller while the re-pick rule applied to an attempt's first pick too.)
TEST_F(DeadInstance, RetriesOfAGetGoBackToInstancesTriedBefore) {
  auto& client = caller_->client(audit);
  for (int i = 0; i < 5; ++i) {
    auto future = boost::asio::co_spawn(
        caller_->pool().executor(0),
        [&client]() -> boost::asio::awaitable<Recorded> { co_return co_await client.execute({1}); },
        boost::asio::use_future);
    EXPECT_THROW(future.get(), std::exception);
  }
  // Each call reached the live instance at least once (its only chance to succeed) and
  // at most once per attempt.
  EXPECT_GE(audits_.load(), 5);
  EXPECT_LE(audits_.load(), 15);
}

// A refused connect sent nothing: the POST's declared retry sends it again, as for a GET
// (Envoy's connect-failure retry), each attempt counted. Here the only endpoint is a
// closed port (a fixed upstream: no other instance to fail over to within the attempt),
// so all 3 attempts fail. A retry on a POST did not compile without the opt-in, and
// with it would also have repeated a POST that reached the callee.
TEST_F(DeadInstance, APostsRetrySendsItAgainWhenNothingWasSent) {
  auto& client =
      caller_->client(record_retried, http::Destination{.host = "127.0.0.1", .port = free_port()});
  auto future = boost::asio::co_spawn(
      caller_->pool().executor(0),
      [&client]() -> boost::asio::awaitable<Recorded> { co_return co_await client.execute({1}); },
      boost::asio::use_future);
  EXPECT_THROW(future.get(), http::ClientError);
  const auto metrics = http_fetch("127.0.0.1", caller_->port(), "/metrics").body;
  EXPECT_NE(
      metrics.find(
          R"(coromesh_qos_calls_total{operation="record_retried",result="error",side="client"} 3)"),
      std::string::npos)
      << metrics;
}

// The control: the same declared retry never sends again a POST that reached the ledger
// and failed there (it may have taken effect).
TEST_F(DeadInstance, APostsRetryNeverSendsAgainWhatReachedTheCallee) {
  auto& client = caller_->client(record_retried,
                                 http::Destination{.host = "127.0.0.1", .port = ledger_->port()});
  auto future = boost::asio::co_spawn(
      caller_->pool().executor(0),
      [&client]() -> boost::asio::awaitable<Recorded> { co_return co_await client.execute({-1}); },
      boost::asio::use_future);
  EXPECT_THROW(future.get(), RemoteError);
  EXPECT_EQ(received_.load(), 1) << "a POST that reached the ledger was sent again";
}

}  // namespace
}  // namespace coromesh::testing
