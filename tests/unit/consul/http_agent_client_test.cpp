#include "coromesh/consul/http_agent_client.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <filesystem>
#include <fstream>
#include <functional>

#include "async_test.hpp"

namespace coromesh::consul {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using coromesh::testing::run_async;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Stands in for the agent where real Consul cannot: answers with whatever `answer`
// returns, including what Consul never sends, and records the requests.
class FakeAgentServer {
 public:
  using Answer = std::function<http::Response(const http::Request&)>;

  FakeAgentServer(asio::io_context& ioc, Answer answer)
      : acceptor_(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        answer_(std::move(answer)) {
    asio::co_spawn(ioc, accept_loop(), asio::detached);
  }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

  std::vector<http::Request> requests;

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (ec) {
        co_return;
      }
      asio::co_spawn(acceptor_.get_executor(), serve(beast::tcp_stream(std::move(socket))),
                     asio::detached);
    }
  }
  asio::awaitable<void> serve(beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    for (;;) {
      http::Request request;
      auto [ec, n] = co_await beast::http::async_read(stream, buffer, request, use_tuple);
      if (ec) {
        co_return;
      }
      requests.push_back(request);
      auto response = answer_(request);
      response.prepare_payload();
      co_await beast::http::async_write(stream, response, use_tuple);
    }
  }

  tcp::acceptor acceptor_;
  Answer answer_;
};

http::Response respond(http::Status status, std::string body, std::string index = "42") {
  http::Response response(status, 11);
  response.body() = std::move(body);
  if (!index.empty()) {
    response.set("X-Consul-Index", index);
  }
  return response;
}

class HttpAgentClientTest : public ::testing::Test {
 protected:
  template <class T>
  T call(FakeAgentServer& server, std::function<asio::awaitable<T>(HttpAgentClient&)> body,
         std::string token = {}) {
    HttpAgentClient agent(ioc_.get_executor(),
                          {.address = server.address(), .token = std::move(token)});
    std::optional<T> result;
    run_async(ioc_, [&]() -> asio::awaitable<void> { result = co_await body(agent); }());
    return std::move(*result);
  }

  // The ConsulError a call throws.
  ConsulError error_of(FakeAgentServer& server,
                       std::function<asio::awaitable<void>(HttpAgentClient&)> body) {
    try {
      call<bool>(server, [&](HttpAgentClient& agent) -> asio::awaitable<bool> {
        co_await body(agent);
        co_return true;
      });
    } catch (const ConsulError& e) {
      return e;
    }
    throw std::logic_error("expected a ConsulError");
  }

  asio::io_context ioc_;
};

TEST(HttpAgentClientAddress, AcceptsHostPortAndAnHttpUrl) {
  asio::io_context ioc;
  HttpAgentClient plain(ioc.get_executor(), {.address = "127.0.0.1:8500"});
  EXPECT_EQ(plain.destination().host, "127.0.0.1");
  EXPECT_EQ(plain.destination().port, 8500);
  HttpAgentClient url(ioc.get_executor(), {.address = "http://consul.local:18500/"});
  EXPECT_EQ(url.destination().host, "consul.local");
  EXPECT_EQ(url.destination().port, 18500);
  HttpAgentClient v6(ioc.get_executor(), {.address = "[::1]:8500"});
  EXPECT_EQ(v6.destination().host, "::1");
}

TEST(HttpAgentClientAddress, RejectsWhatIsNotHostPort) {
  asio::io_context ioc;
  for (const char* bad : {"", "127.0.0.1", ":8500", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:85x0", "https://127.0.0.1:8501"}) {
    EXPECT_THROW(HttpAgentClient(ioc.get_executor(), {.address = bad}), std::invalid_argument)
        << bad;
  }
  try {
    HttpAgentClient(ioc.get_executor(), {.address = "localhost"});
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'localhost'"), std::string::npos) << e.what();
  }
}

TEST_F(HttpAgentClientTest, SendsTheTokenAndBlockingQueryParameters) {
  FakeAgentServer server(
      ioc_, [](const http::Request&) { return respond(http::Status::ok, "[]", "43"); });
  auto result = call<QueryResult<std::vector<ServiceInstance>>>(
      server,
      [](HttpAgentClient& agent) {
        return agent.health_service("web api", true, {.index = 42, .wait = 2s});
      },
      "secret-token");
  EXPECT_TRUE(result.value.empty());
  EXPECT_EQ(result.index, 43u);
  ASSERT_EQ(server.requests.size(), 1u);
  const auto& request = server.requests[0];
  EXPECT_EQ(request.target(), "/v1/health/service/web%20api?passing&index=42&wait=2000ms");
  EXPECT_EQ(request["X-Consul-Token"], "secret-token");
}

TEST_F(HttpAgentClientTest, ATokenFileIsReadForEveryCallAndItsSecretNeverReachesAnError) {
  const auto file = std::filesystem::temp_directory_path() /
                    ("coromesh-agent-token-" + std::to_string(::getpid()));
  std::ofstream(file) << "first-secret\n";
  // A proxy in front of Consul echoing the token: the message must not carry it.
  FakeAgentServer server(ioc_, [](const http::Request& request) {
    return respond(http::Status::forbidden,
                   "Permission denied for " + std::string(request["X-Consul-Token"]));
  });
  HttpAgentClient agent(
      ioc_.get_executor(),
      {.address = server.address(), .token = "ignored", .token_file = file.string()});
  std::vector<std::string> errors;
  auto ask = [&]() -> asio::awaitable<void> {
    try {
      co_await agent.kv_get("k", {});
    } catch (const ConsulError& e) {
      errors.emplace_back(e.what());
    }
  };
  run_async(ioc_, ask());
  std::ofstream(file, std::ios::trunc) << "second-secret-longer\n";  // rotated
  run_async(ioc_, ask());
  std::filesystem::remove(file);
  ASSERT_EQ(server.requests.size(), 2u);
  EXPECT_EQ(server.requests[0]["X-Consul-Token"], "first-secret");
  EXPECT_EQ(server.requests[1]["X-Consul-Token"], "second-secret-longer");
  EXPECT_EQ(agent.credentials_generation(), 1u);
  ASSERT_EQ(errors.size(), 2u);
  for (const auto& error : errors) {
    EXPECT_EQ(error.find("secret"), std::string::npos) << error;
    EXPECT_NE(error.find("403 Forbidden: Permission denied for <token>"), std::string::npos)
        << error;
  }
  const auto counts = agent.request_counts();
  EXPECT_EQ(counts[static_cast<std::size_t>(RequestOutcome::forbidden)], 2u);
  EXPECT_EQ(counts[static_cast<std::size_t>(RequestOutcome::ok)], 0u);
}

TEST_F(HttpAgentClientTest, CountsEachCallByOutcome) {
  int next = 0;
  FakeAgentServer server(ioc_, [&](const http::Request&) {
    switch (next++) {
      case 0:
        return respond(http::Status::ok, "true");
      case 1:
        return respond(http::Status::not_found, "");
      case 2:
        return respond(http::Status::bad_request, "Bad request");
      default:
        return respond(http::Status::internal_server_error, "No cluster leader");
    }
  });
  HttpAgentClient agent(ioc_.get_executor(), {.address = server.address()});
  for (int i = 0; i < 4; ++i) {
    run_async(ioc_, [&]() -> asio::awaitable<void> {
      try {
        co_await agent.kv_put("k", "v");
      } catch (const ConsulError&) {
      }
    }());
  }
  HttpAgentClient nobody(ioc_.get_executor(), {.address = "127.0.0.1:1"});
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    try {
      co_await nobody.kv_put("k", "v");
    } catch (const http::ClientError&) {
    }
  }());
  const RequestCounts expected{1, 1, 0, 1, 1, 0};
  EXPECT_EQ(agent.request_counts(), expected);
  EXPECT_EQ(nobody.request_counts()[static_cast<std::size_t>(RequestOutcome::unreachable)], 1u);
}

TEST_F(HttpAgentClientTest, ANonBlockingQueryNamesNoIndex) {
  FakeAgentServer server(
      ioc_, [](const http::Request&) { return respond(http::Status::not_found, "", "7"); });
  auto result = call<QueryResult<std::optional<KvEntry>>>(
      server, [](HttpAgentClient& agent) { return agent.kv_get("config/add", {}); });
  EXPECT_FALSE(result.value);
  EXPECT_EQ(result.index, 7u);
  EXPECT_EQ(server.requests.at(0).target(), "/v1/kv/config/add");
  EXPECT_EQ(server.requests.at(0).count("X-Consul-Token"), 0u);
}

TEST_F(HttpAgentClientTest, AnErrorStatusIsAConsulErrorWithStatusAndBody) {
  FakeAgentServer server(ioc_, [](const http::Request&) {
    return respond(http::Status::internal_server_error, "rpc error: No cluster leader\n");
  });
  auto error = error_of(server, [](HttpAgentClient& agent) -> asio::awaitable<void> {
    co_await agent.health_service("web", false, {});
  });
  EXPECT_EQ(error.status(), 500);
  EXPECT_EQ(error.request(), "GET /v1/health/service/web");
  EXPECT_EQ(error.body_excerpt(), "rpc error: No cluster leader");
  EXPECT_STREQ(error.what(),
               "consul GET /v1/health/service/web: 500 Internal Server Error: rpc error: No "
               "cluster leader");
}

TEST_F(HttpAgentClientTest, AMalformedAnswerIsAConsulError) {
  FakeAgentServer server(ioc_, [](const http::Request& request) {
    if (request.target().starts_with("/v1/health")) {
      return respond(http::Status::ok, R"([{"Node": {}, "Service": {"Port": "x"}}])");
    }
    if (request.target().starts_with("/v1/kv")) {
      return respond(http::Status::ok, "[]", "");  // and no X-Consul-Index
    }
    return respond(http::Status::ok, "{ not json");
  });
  auto health = error_of(server, [](HttpAgentClient& agent) -> asio::awaitable<void> {
    co_await agent.health_service("web", false, {});
  });
  EXPECT_EQ(health.status(), 200);
  EXPECT_NE(std::string(health.what()).find("malformed answer (field Port is not an integer"),
            std::string::npos)
      << health.what();
  auto kv = error_of(server, [](HttpAgentClient& agent) -> asio::awaitable<void> {
    co_await agent.kv_get("k", {});
  });
  EXPECT_NE(std::string(kv.what()).find("entries, not 1"), std::string::npos) << kv.what();
  auto service = error_of(server, [](HttpAgentClient& agent) -> asio::awaitable<void> {
    co_await agent.agent_service("web-1");
  });
  EXPECT_NE(std::string(service.what()).find("invalid JSON"), std::string::npos) << service.what();
}

TEST_F(HttpAgentClientTest, AMissingIndexHeaderIsAConsulError) {
  FakeAgentServer server(ioc_,
                         [](const http::Request&) { return respond(http::Status::ok, "[]", ""); });
  auto error = error_of(server, [](HttpAgentClient& agent) -> asio::awaitable<void> {
    co_await agent.health_connect("web", true, {});
  });
  EXPECT_NE(std::string(error.what()).find("no X-Consul-Index"), std::string::npos) << error.what();
}

TEST_F(HttpAgentClientTest, EncodesWritesAndTheirTargets) {
  FakeAgentServer server(ioc_, [](const http::Request& request) {
    return respond(http::Status::ok, request.target().starts_with("/v1/kv") ? "true" : "");
  });
  call<bool>(server, [](HttpAgentClient& agent) -> asio::awaitable<bool> {
    co_await agent.set_maintenance("web/1", true, "shutting down");
    co_await agent.pass_ttl(ttl_check_id("web-1"), "ok");
    co_await agent.deregister_service("web-1");
    co_return co_await agent.kv_put("config/add", "v=1");
  });
  ASSERT_EQ(server.requests.size(), 4u);
  EXPECT_EQ(server.requests[0].target(),
            "/v1/agent/service/maintenance/web%2F1?enable=true&reason=shutting%20down");
  EXPECT_EQ(server.requests[1].target(), "/v1/agent/check/update/service%3Aweb-1");
  EXPECT_EQ(server.requests[1].body(), R"({"Status":"passing","Output":"ok"})");
  EXPECT_EQ(server.requests[2].method(), http::Verb::put);
  EXPECT_EQ(server.requests[3].target(), "/v1/kv/config/add");
  EXPECT_EQ(server.requests[3].body(), "v=1");
}

TEST_F(HttpAgentClientTest, AsksForConnectMaterialWithBlockingQueries) {
  FakeAgentServer server(ioc_, [](const http::Request& request) {
    if (request.target().starts_with("/v1/agent/connect/ca/roots")) {
      return respond(http::Status::ok,
                     R"({"TrustDomain": "t.consul", "ActiveRootID": "r1",
                         "Roots": [{"ID": "r1", "RootCert": "pem", "Active": true}]})",
                     "12");
    }
    return respond(http::Status::ok, R"({"SerialNumber": "01", "CertPEM": "c", "PrivateKeyPEM": "k",
        "Service": "web api", "ServiceURI": "spiffe://t.consul/ns/default/dc/dc1/svc/web%20api",
        "ValidAfter": "2024-01-01T00:00:00Z", "ValidBefore": "2024-01-04T00:00:00Z"})",
                   "13");
  });
  auto roots = call<QueryResult<CaRoots>>(server, [](HttpAgentClient& agent) {
    return agent.connect_ca_roots({.index = 11, .wait = 3s});
  });
  EXPECT_EQ(roots.index, 12u);
  EXPECT_EQ(roots.value.trust_domain, "t.consul");
  auto leaf = call<QueryResult<LeafCertificate>>(
      server, [](HttpAgentClient& agent) { return agent.connect_ca_leaf("web api", {}); });
  EXPECT_EQ(leaf.index, 13u);
  EXPECT_EQ(leaf.value.service, "web api");
  ASSERT_EQ(server.requests.size(), 2u);
  EXPECT_EQ(server.requests[0].target(), "/v1/agent/connect/ca/roots?index=11&wait=3000ms");
  EXPECT_EQ(server.requests[1].target(), "/v1/agent/connect/ca/leaf/web%20api");
}

TEST_F(HttpAgentClientTest, PostsAuthorizeAndRefusesAnUndecidedAnswer) {
  FakeAgentServer server(ioc_, [](const http::Request& request) {
    if (request.body().find("svc/web") != std::string::npos) {
      return respond(http::Status::ok, R"({"Authorized": false, "Reason": "denied"})");
    }
    return respond(http::Status::ok, R"({"Reason": "no verdict"})");
  });
  auto result = call<AuthorizeResult>(server, [](HttpAgentClient& agent) {
    return agent.connect_authorize("db", "spiffe://t.consul/ns/default/dc/dc1/svc/web", "0a",
                                   std::chrono::milliseconds::zero());
  });
  EXPECT_FALSE(result.authorized);
  EXPECT_EQ(result.reason, "denied");
  EXPECT_EQ(server.requests.at(0).method(), http::Verb::post);
  EXPECT_EQ(server.requests.at(0).target(), "/v1/agent/connect/authorize");
  EXPECT_EQ(server.requests.at(0).body(),
            R"({"Target":"db","ClientCertURI":"spiffe://t.consul/ns/default/dc/dc1/svc/web",)"
            R"("ClientCertSerial":"0a"})");
  auto error = error_of(server, [](HttpAgentClient& agent) -> asio::awaitable<void> {
    co_await agent.connect_authorize("db", "spiffe://t.consul/ns/default/dc/dc1/svc/x", "0b",
                                     std::chrono::milliseconds::zero());
  });
  EXPECT_EQ(error.status(), 200);
  EXPECT_NE(std::string(error.what()).find("lacks a boolean Authorized"), std::string::npos)
      << error.what();
}

TEST_F(HttpAgentClientTest, AGarbledLeafIsAConsulError) {
  FakeAgentServer server(ioc_, [](const http::Request&) {
    return respond(http::Status::ok, R"({"SerialNumber": "01", "CertPEM": )");
  });
  auto error = error_of(server, [](HttpAgentClient& agent) -> asio::awaitable<void> {
    co_await agent.connect_ca_leaf("web", {});
  });
  EXPECT_EQ(error.request(), "GET /v1/agent/connect/ca/leaf/web");
  EXPECT_NE(std::string(error.what()).find("invalid JSON"), std::string::npos) << error.what();
}

}  // namespace
}  // namespace coromesh::consul
