// Discovery by service name (sidecar mode, no --upstreams entry): a caller's typed
// client finds the instances of the service its operation's declaration names in a real
// Consul agent (/v1/health/service/<name>?passing), spreads calls over them, retries on
// another instance, ejects one that keeps failing (but not for the caller's own 4xx),
// and forgets one that leaves, connection pool included.

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <coromesh/config/error.hpp>
#include <coromesh/service/service.hpp>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <type_traits>

#include "consul_agent.hpp"
#include "mesh_test_services.hpp"
#include "test_env.hpp"

namespace coromesh::testing {
namespace {

using namespace std::chrono_literals;

// The same operation without served_by: reachable only through --upstreams.
COROMESH_OPERATION(undeclared_service, GET, "/api/v1/whoami", WhoamiProbe, WhoamiReply);

// Served by "silent": an instance that takes connections and never answers.
COROMESH_OPERATION(silent_call, GET, "/api/v1/whoami", WhoamiProbe, WhoamiReply,
                   coromesh::served_by("silent"));

class Discovery : public ::testing::Test {
 protected:
  void SetUp() override {
    first_ = start_whoami(consul_, config::MeshMode::sidecar);
    second_ = start_whoami(consul_, config::MeshMode::sidecar, /*failing=*/true);
    auto config = mesh_service_config(consul_, "caller", config::MeshMode::sidecar);
    config.consul_register = false;
    caller_ = std::make_unique<Service>(config);
    caller_->start();
    ASSERT_TRUE(wait_until(
        [&] {
          const auto answer = consul_.api("GET", "/v1/health/service/whoami?passing");
          return answer.status == 200 && boost::json::parse(answer.body).as_array().size() == 2;
        },
        30s))
        << "both instances passing in Consul";
  }

  void TearDown() override {
    for (auto* service : {caller_.get(), first_.get(), second_.get()}) {
      if (service != nullptr) {
        service->request_shutdown();
        service->wait();
      }
    }
  }

  std::map<std::string, int> spread(OperationClient<std::remove_cvref_t<decltype(whoami)>>& client,
                                    int calls, WhoamiProbe probe = {}) {
    std::map<std::string, int> by_instance;
    for (int i = 0; i < calls; ++i) {
      ++by_instance[call_whoami(*caller_, client, probe).instance];
    }
    return by_instance;
  }

  ConsulAgent consul_;
  std::unique_ptr<Service> first_;
  std::unique_ptr<Service> second_;
  std::unique_ptr<Service> caller_;
};

TEST_F(Discovery, CallsSpreadOverEveryPassingInstanceWithoutAnUpstreamEntry) {
  auto& client = caller_->client(whoami);
  ASSERT_TRUE(client.transport().options().discovered) << "no --upstreams entry: discovered";
  const auto by_instance = spread(client, 20);
  ASSERT_EQ(by_instance.size(), 2u);
  // Round robin over an unchanged set alternates exactly.
  EXPECT_EQ(by_instance.at(first_->instance_id()), 10);
  EXPECT_EQ(by_instance.at(second_->instance_id()), 10);
}

TEST_F(Discovery, AnUpstreamEntryStillWins) {
  auto config = mesh_service_config(consul_, "pinned", config::MeshMode::sidecar);
  config.consul_register = false;
  config.upstreams["whoami"] = config::Address{"127.0.0.1", first_->port()};
  Service pinned(config);
  pinned.start();
  auto& client = pinned.client(whoami);
  EXPECT_FALSE(client.transport().options().discovered);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(call_whoami(pinned, client).instance, first_->instance_id());
  }
  pinned.request_shutdown();
  pinned.wait();
}

TEST_F(Discovery, AnInstanceThatLeavesIsNoLongerCalledAndItsConnectionsAreClosed) {
  auto& client = caller_->client(whoami);
  ASSERT_EQ(spread(client, 10).size(), 2u);
  const http::Destination gone{"127.0.0.1", second_->port()};
  const auto idle_to_gone = [&] {
    auto future = boost::asio::co_spawn(
        caller_->pool().executor(0),
        [&]() -> boost::asio::awaitable<std::size_t> {
          co_return client.transport().idle_connections_to(caller_->pool().executor(0), gone);
        },
        boost::asio::use_future);
    return future.get();
  };
  ASSERT_GE(idle_to_gone(), 1u) << "a keep-alive connection to the second instance is pooled";

  // The second instance shuts down: it leaves Consul first, then stops serving.
  second_->request_shutdown();
  // Every call succeeds meanwhile (a call that still reaches the leaving instance is
  // retried on the other), and the client stops using it once Consul says it left.
  int calls = 0;
  int consecutive_first = 0;
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (consecutive_first < 20 && std::chrono::steady_clock::now() < give_up) {
    const auto reply = call_whoami(*caller_, client);
    ++calls;
    consecutive_first = reply.instance == first_->instance_id() ? consecutive_first + 1 : 0;
  }
  EXPECT_EQ(consecutive_first, 20) << "after " << calls << " calls";
  second_->wait();
  second_.reset();
  // The calls above may have stopped reaching it by outlier ejection (its port refusing
  // connections) before Consul's answer came: the departure itself is awaited here, with
  // calls going on (the client applies a new set of endpoints at its next pick).
  std::vector<connect::EndpointStats> stats;
  EXPECT_TRUE(wait_until(
      [&] {
        EXPECT_EQ(call_whoami(*caller_, client).instance, first_->instance_id());
        stats = client.transport().options().discovered->endpoint_stats();
        return stats.size() == 1u;
      },
      15s, 50ms))
      << stats.size() << " endpoints";
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].port, first_->port());
  EXPECT_EQ(idle_to_gone(), 0u) << "the pool forgot the departed instance";
}

TEST_F(Discovery, AnInstanceThatKeepsFailingIsEjectedAndCallsStillSucceed) {
  auto& client = caller_->client(whoami);
  // The second instance answers 503 to these probes; each such call is retried on the
  // first, so every call succeeds, and five failures in a row eject the second.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(call_whoami(*caller_, client, {.fail_status = 503}).instance, first_->instance_id());
  }
  bool second_ejected = false;
  for (const auto& endpoint : client.transport().options().discovered->endpoint_stats()) {
    if (endpoint.port == second_->port()) {
      second_ejected = endpoint.ejected;
      EXPECT_GE(endpoint.failures, 5u);
    }
  }
  EXPECT_TRUE(second_ejected);
  // Ejected: plain calls now all go to the first instance.
  const auto by_instance = spread(client, 10);
  EXPECT_EQ(by_instance.size(), 1u);
  EXPECT_EQ(by_instance.count(first_->instance_id()), 1u);
}

TEST_F(Discovery, TheCallersOwn4xxEjectsNobody) {
  auto& client = caller_->client(whoami);
  for (int i = 0; i < 20; ++i) {
    EXPECT_THROW(call_whoami(*caller_, client, {.fail_status = 422}), RemoteError);
  }
  for (const auto& endpoint : client.transport().options().discovered->endpoint_stats()) {
    EXPECT_FALSE(endpoint.ejected) << endpoint.key;
    EXPECT_EQ(endpoint.failures, 0u) << endpoint.key;
    EXPECT_EQ(endpoint.successes, 10u)
        << endpoint.key << ": a 4xx answer is the endpoint's success";
  }
  EXPECT_EQ(spread(client, 10).size(), 2u);
}

TEST_F(Discovery, AnOperationWithNeitherUpstreamNorServiceIsAConfigurationError) {
  EXPECT_THROW(caller_->client(undeclared_service), config::ConfigError);
}

TEST_F(Discovery, ShutdownWithACallPendingOnADiscoveredInstanceEndsPromptly) {
  // A listening socket that is never accepted from: the kernel completes the TCP
  // handshake, the request is sent, no answer ever comes.
  boost::asio::io_context never_run;
  boost::asio::ip::tcp::acceptor silent(never_run, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto registered =
      consul_.api("PUT", "/v1/agent/service/register",
                  R"({"Name": "silent", "ID": "silent-1", "Address": "127.0.0.1", "Port": )" +
                      std::to_string(silent.local_endpoint().port()) + "}");
  ASSERT_EQ(registered.status, 200) << registered.body;
  auto& client = caller_->client(silent_call);
  auto pending = boost::asio::co_spawn(
      caller_->pool().executor(1),
      [&client]() -> boost::asio::awaitable<WhoamiReply> {
        co_return co_await client.execute(WhoamiProbe{});
      },
      boost::asio::use_future);
  ASSERT_EQ(pending.wait_for(500ms), std::future_status::timeout) << "the call is under way";
  const auto started = std::chrono::steady_clock::now();
  caller_->request_shutdown();
  EXPECT_EQ(caller_->wait(), 0);
  caller_.reset();  // the abandoned call's frame is destroyed with the service
  EXPECT_LT(std::chrono::steady_clock::now() - started, 15s);
  ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
  EXPECT_ANY_THROW(pending.get());
}

}  // namespace
}  // namespace coromesh::testing
