// Connect-native services (--mesh=native) in a real Consul dev agent's mesh (Connect on,
// intentions default allow): each serves its port with Consul-issued mTLS and authorizes
// callers by intentions, and its typed clients dial the callee's Connect endpoints
// directly, whether those are native instances, coromesh-sidecars or `consul connect
// proxy`; and the other way round.

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <coromesh/metrics/registry.hpp>
#include <coromesh/service/service.hpp>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <type_traits>

#include "consul_agent.hpp"
#include "mesh_fixture.hpp"
#include "mesh_test_services.hpp"
#include "test_certificate_authority.hpp"
#include "test_env.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// Gives the Connect CA a new root key (Consul then re-signs every leaf, each with a
// random delay of up to a minute).
void rotate_ca_root(const ConsulAgent& consul) {
  json::object config{{"Provider", "consul"}, {"Config", {{"PrivateKey", new_ec_key_pem()}}}};
  const auto answer = consul.api("PUT", "/v1/connect/ca/configuration", json::serialize(config));
  ASSERT_EQ(answer.status, 200) << answer.body;
}

class NativeMesh : public ::testing::Test {
 protected:
  void TearDown() override {
    for (auto& service : services_) {
      service->request_shutdown();
      service->wait();
    }
  }

  Service& keep(std::unique_ptr<Service> service) {
    services_.push_back(std::move(service));
    return *services_.back();
  }
  Service& native_whoami() { return keep(start_whoami(consul_, config::MeshMode::native)); }
  // whoami in sidecar mode (plain HTTP), not registered: a proxy in front registers.
  // Its replies name `via` as the caller (the proxy's connection carries no identity).
  Service& plain_whoami(std::string via) {
    auto config = mesh_service_config(consul_, "whoami", config::MeshMode::sidecar);
    config.consul_register = false;
    auto service = std::make_unique<Service>(config);
    auto* self = service.get();
    service->serve(
        whoami, [self, via = std::move(via)](WhoamiProbe) -> boost::asio::awaitable<WhoamiReply> {
          co_return WhoamiReply{self->instance_id(), via};
        });
    service->start();
    return keep(std::move(service));
  }
  // coromesh-sidecar in front of `plain` (whoami in sidecar mode), registered as its
  // Connect endpoint; `extra` adds to its command line.
  SidecarProcess& whoami_sidecar(Service& plain, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--service",      "whoami",
                                  "--service-addr", "127.0.0.1:" + std::to_string(plain.port()),
                                  "--listen",       "127.0.0.1:" + std::to_string(free_port()),
                                  "--register"};
    args.insert(args.end(), extra.begin(), extra.end());
    sidecars_.push_back(
        std::make_unique<SidecarProcess>(consul_, logs_.path(), "whoami-sidecar", args));
    return *sidecars_.back();
  }
  // A caller that only calls (not registered: its leaf is enough to be a client).
  Service& native_caller(const std::string& name) {
    auto config = mesh_service_config(consul_, name, config::MeshMode::native);
    config.consul_register = false;
    auto service = std::make_unique<Service>(config);
    service->start();
    return keep(std::move(service));
  }
  // Calls until one call ends as `Outcome`: a WhoamiReply, or the callee's RemoteError
  // answer (certificates and Consul's answers take a moment after start-up); any other
  // end is kept in last_error_. nullopt if none does within `patience`.
  template <class Outcome, class Client>
  std::optional<Outcome> first(Service& caller, Client& client,
                               std::chrono::milliseconds patience) {
    std::optional<Outcome> outcome;
    wait_until(
        [&] {
          try {
            auto reply = call_whoami(caller, client);
            if constexpr (std::is_same_v<Outcome, WhoamiReply>) {
              outcome = std::move(reply);
              return true;
            }
            last_error_ = "answered";
          } catch (const RemoteError& e) {
            if constexpr (std::is_same_v<Outcome, RemoteError>) {
              outcome = e;
              return true;
            }
            last_error_ = e.what();
          } catch (const std::exception& e) {
            last_error_ = e.what();
          }
          return false;
        },
        patience, 200ms);
    return outcome;
  }
  template <class Client>
  std::optional<WhoamiReply> first_reply(Service& caller, Client& client,
                                         std::chrono::milliseconds patience = 30s) {
    return first<WhoamiReply>(caller, client, patience);
  }
  static double metric(Service& service, const std::string& family,
                       const std::vector<std::string>& labels) {
    return metric_sum(service.metrics().render(), family, labels);
  }

  template <class Client>
  std::optional<RemoteError> first_refusal(Service& caller, Client& client,
                                           std::chrono::milliseconds patience = 15s) {
    return first<RemoteError>(caller, client, patience);
  }
  // A denied caller is told why: 403 `unauthorized` with Consul's reason.
  void expect_told_unauthorized(const std::optional<RemoteError>& refusal,
                                const std::string& caller) {
    ASSERT_TRUE(refusal) << "no refusal answer; last: " << last_error_;
    EXPECT_EQ(refusal->status(), 403u) << refusal->what();
    EXPECT_EQ(refusal->code(), "unauthorized") << refusal->what();
    EXPECT_NE(refusal->reason().find("whoami does not accept calls from " + caller),
              std::string::npos)
        << refusal->what();
    EXPECT_NE(refusal->reason().find("intention"), std::string::npos)
        << "Consul's reason: " << refusal->what();
    std::cout << "refusal: " << refusal->what() << "\n";
  }

  void deny(const std::string& source, const std::string& destination) {
    const auto answer = consul_.api(
        "PUT", "/v1/connect/intentions/exact?source=" + source + "&destination=" + destination,
        R"({"Action": "deny"})");
    ASSERT_EQ(answer.status, 200) << answer.body;
  }

  // Calls through `client` until `rotated` (both ends hold leaves of the new root); none
  // may fail.
  template <class Client>
  void expect_calls_survive_rotation(Service& caller, Client& client,
                                     const std::function<bool()>& rotated, const char* what) {
    int calls = 0;
    int failures = 0;
    const bool done = wait_until(
        [&] {
          try {
            call_whoami(caller, client);
          } catch (const std::exception& e) {
            ++failures;
            last_error_ = e.what();
          }
          ++calls;
          return rotated();
        },
        // Each end's leaf is re-signed up to a minute after the rotation (Consul's random
        // delay), then reaches it by a blocking query: 90 s was once not enough for both
        // on a loaded CI machine, every call still answered.
        150s, 200ms);
    EXPECT_TRUE(done) << what << " within 150 s (" << calls << " calls)";
    EXPECT_EQ(failures, 0) << "of " << calls << " calls; last: " << last_error_;
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-native-test"};
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<SidecarProcess>> sidecars_;  // stopped before the services
  std::string last_error_;
};

TEST_F(NativeMesh, NativeCallsNativeOverMutualTlsAndSpreadsOverInstances) {
  auto& first = native_whoami();
  auto& second = native_whoami();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 2); }, 30s))
      << "both native instances are Connect endpoints";
  const auto registered = consul_.api("GET", "/v1/agent/service/" + first.instance_id());
  const auto registration = json::parse(registered.body);
  EXPECT_TRUE(registration.at("Connect").at("Native").as_bool()) << registered.body;

  auto& caller = native_caller("caller");
  auto& client = caller.client(whoami);
  const auto reply = first_reply(caller, client);
  ASSERT_TRUE(reply) << last_error_;
  EXPECT_TRUE(reply->caller.starts_with("spiffe://")) << reply->caller;
  EXPECT_TRUE(reply->caller.ends_with("/svc/caller")) << reply->caller;
  std::set<std::string> seen;
  for (int i = 0; i < 10; ++i) {
    seen.insert(call_whoami(caller, client).instance);
  }
  EXPECT_EQ(seen, (std::set<std::string>{first.instance_id(), second.instance_id()}));
  EXPECT_GE(metric(first, "coromesh_connect_native_handshakes_total", {R"(result="accepted")"}), 1);

  // The plain admin port serves Consul's check and Prometheus; the mTLS port refuses
  // a plain client.
  const auto& meta = registration.at("Meta");
  const auto admin_port = std::stoi(std::string(meta.at("metrics_port").as_string()));
  EXPECT_NE(admin_port, first.port());
  EXPECT_EQ(http_fetch("127.0.0.1", static_cast<std::uint16_t>(admin_port), "/health").status, 200);
  EXPECT_NE(http_fetch("127.0.0.1", first.port(), "/health").status, 200);
}

TEST_F(NativeMesh, ADenyIntentionRefusesTheCallerAndIsCounted) {
  auto& callee = native_whoami();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 1); }, 30s));
  ASSERT_EQ(consul_
                .api("PUT", "/v1/connect/intentions/exact?source=intruder&destination=whoami",
                     R"({"Action": "deny"})")
                .status,
            200);
  auto& intruder = native_caller("intruder");
  auto& refused = intruder.client(whoami);
  expect_told_unauthorized(first_refusal(intruder, refused), "intruder");
  EXPECT_GE(metric(callee, "coromesh_connect_native_handshakes_total",
                   {R"(result="refused")", R"(reason="unauthorized")"}),
            1);
  // Another caller is still allowed (default allow).
  auto& friendly = native_caller("friendly");
  auto& allowed = friendly.client(whoami);
  EXPECT_TRUE(first_reply(friendly, allowed)) << last_error_;
}

TEST_F(NativeMesh, ACallerConsulCouldNotDecideOnIsNotCountedAsDeniedByTheIntentions) {
  auto& callee = native_whoami();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 1); }, 30s));
  auto& caller = native_caller("caller");
  auto& client = caller.client(whoami);
  // The caller's own leaf and the callee's endpoint are in, but no call was made: the
  // callee has no decision about this caller to fall back on once the agent is gone.
  ASSERT_TRUE(wait_until(
      [&] {
        const auto endpoints = client.transport().options().discovered->snapshot();
        return metric(caller, "coromesh_connect_native_tls_material_generation", {}) >= 1 &&
               endpoints && !endpoints->empty();
      },
      30s));
  consul_.stop();
  const auto refusal = first_refusal(caller, client);
  ASSERT_TRUE(refusal) << "no refusal answer; last: " << last_error_;
  EXPECT_EQ(refusal->status(), 503u) << refusal->what();
  EXPECT_EQ(refusal->code(), "authorization_unavailable") << refusal->what();
  EXPECT_EQ(metric(callee, "coromesh_connect_native_handshakes_total",
                   {R"(result="refused")", R"(reason="unauthorized")"}),
            0)
      << "no intention denied the caller: Consul could not be asked";
  EXPECT_GE(metric(callee, "coromesh_connect_native_handshakes_total",
                   {R"(result="refused")", R"(reason="authorization_unavailable")"}),
            1);
}

TEST_F(NativeMesh, NativeCallsAServiceBehindCoromeshSidecar) {
  // whoami in sidecar mode, fronted by our sidecar (its Connect endpoint).
  auto& plain = plain_whoami("via-sidecar");
  auto& sidecar = whoami_sidecar(plain);
  auto& caller = native_caller("caller");
  auto& client = caller.client(whoami);
  const auto reply = first_reply(caller, client);
  ASSERT_TRUE(reply) << last_error_ << sidecar.log_tail();
  EXPECT_EQ(reply->instance, plain.instance_id());
}

TEST_F(NativeMesh, CoromeshSidecarUpstreamReachesANativeService) {
  auto& callee = native_whoami();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 1); }, 30s));
  const auto upstream_port = free_port();
  SidecarProcess sidecar(
      consul_, logs_.path(), "caller-sidecar",
      {"--service", "caller", "--upstream", "whoami:" + std::to_string(upstream_port)});
  std::pair<int, std::string> answer;
  EXPECT_TRUE(wait_until(
      [&] {
        answer = HttpConnection(upstream_port).request("GET", "/api/v1/whoami");
        return answer.first == 200;
      },
      30s, 200ms))
      << answer.first << " " << answer.second << sidecar.log_tail();
  EXPECT_NE(answer.second.find(callee.instance_id()), std::string::npos) << answer.second;
  EXPECT_NE(answer.second.find("/svc/caller"), std::string::npos) << answer.second;
}

TEST_F(NativeMesh, InteroperatesWithConsulConnectProxyBothWays) {
  // Native -> Consul's inbound proxy in front of a plain whoami.
  auto& plain = plain_whoami("via-consul-proxy");
  const auto ports = free_ports(2);
  auto inbound = consul_connect_proxy(
      consul_, logs_.path(), "whoami-consul-proxy",
      {"-service", "whoami", "-service-addr", "127.0.0.1:" + std::to_string(plain.port()),
       "-listen", "127.0.0.1:" + std::to_string(ports[0]), "-register"});
  auto& caller = native_caller("caller");
  auto& client = caller.client(whoami);
  const auto reply = first_reply(caller, client);
  ASSERT_TRUE(reply) << last_error_ << inbound->log_tail();
  EXPECT_EQ(reply->caller, "via-consul-proxy");

  // Consul's upstream listener -> a native service.
  auto& native = keep(start_whoami(consul_, config::MeshMode::native));
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 2); }, 30s));
  auto outbound = consul_connect_proxy(
      consul_, logs_.path(), "other-consul-proxy",
      {"-service", "other", "-upstream", "whoami:" + std::to_string(ports[1])});
  bool native_answered = false;
  std::pair<int, std::string> answer;
  // Consul's proxy balances over both endpoints: wait until the native one has answered.
  EXPECT_TRUE(wait_until(
      [&] {
        answer = HttpConnection(ports[1]).request("GET", "/api/v1/whoami");
        native_answered =
            answer.first == 200 && answer.second.find(native.instance_id()) != std::string::npos;
        return native_answered;
      },
      30s, 100ms))
      << answer.first << " " << answer.second << outbound->log_tail();
  EXPECT_NE(answer.second.find("/svc/other"), std::string::npos) << answer.second;
}

// The deny intention holds wherever the two ends are a native service and a proxy.
TEST_F(NativeMesh, ACoromeshSidecarRefusesADeniedNativeCaller) {
  auto& plain = plain_whoami("via-sidecar");
  auto& sidecar = whoami_sidecar(plain);
  deny("intruder", "whoami");
  auto& friendly = native_caller("friendly");
  auto& allowed = friendly.client(whoami);
  ASSERT_TRUE(first_reply(friendly, allowed)) << last_error_ << sidecar.log_tail();
  auto& intruder = native_caller("intruder");
  auto& refused = intruder.client(whoami);
  // tcp mode (L4): nothing to say it in; the connection is closed, as by Consul's proxy.
  EXPECT_FALSE(first_reply(intruder, refused, 5s)) << "a denied caller gets no answer";
  EXPECT_FALSE(first_refusal(intruder, refused, 2s)) << "an L4 refusal has no HTTP answer";
  EXPECT_GE(sidecar.metric("coromesh_sidecar_handshakes_total", {R"(reason="unauthorized")"}), 1)
      << sidecar.metrics();
}

TEST_F(NativeMesh, ACoromeshSidecarInHttpModeTellsADeniedNativeCallerWhy) {
  auto& plain = plain_whoami("via-sidecar");
  auto& sidecar = whoami_sidecar(plain, {"--protocol", "http"});
  deny("intruder", "whoami");
  auto& intruder = native_caller("intruder");
  auto& refused = intruder.client(whoami);
  expect_told_unauthorized(first_refusal(intruder, refused), "intruder");
  EXPECT_GE(sidecar.metric("coromesh_sidecar_handshakes_total", {R"(reason="unauthorized")"}), 1)
      << sidecar.metrics();
  EXPECT_EQ(sidecar.metric("coromesh_sidecar_inbound_requests_total"), 0)
      << "a refused request reached the local service";
  auto& friendly = native_caller("friendly");
  auto& allowed = friendly.client(whoami);
  ASSERT_TRUE(first_reply(friendly, allowed)) << last_error_ << sidecar.log_tail();

  // http mode judges requests, not only connections: once the allow is gone, the next
  // request on the connection already open is refused with the reason.
  const auto refused_handshakes =
      sidecar.metric("coromesh_sidecar_handshakes_total", {R"(reason="unauthorized")"});
  deny("friendly", "whoami");
  expect_told_unauthorized(first_refusal(friendly, allowed), "friendly");
  EXPECT_EQ(sidecar.metric("coromesh_sidecar_handshakes_total", {R"(reason="unauthorized")"}),
            refused_handshakes)
      << "refused at a new handshake, not on the open connection";
}

TEST_F(NativeMesh, ANativeServiceRefusesADeniedCoromeshSidecarCaller) {
  auto& callee = native_whoami();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 1); }, 30s));
  deny("outsider", "whoami");
  const auto upstream_port = free_port();
  SidecarProcess sidecar(
      consul_, logs_.path(), "outsider-sidecar",
      {"--service", "outsider", "--upstream", "whoami:" + std::to_string(upstream_port)});
  ASSERT_TRUE(
      wait_until([&] { return sidecar.metric("coromesh_sidecar_upstream_endpoints") == 1; }, 30s));
  // The sidecar's upstream is tcp mode: the native callee's HTTP answer passes through.
  for (int i = 0; i < 5; ++i) {
    const auto answer = HttpConnection(upstream_port).request("GET", "/api/v1/whoami");
    EXPECT_EQ(answer.first, 403) << answer.second;
    EXPECT_NE(answer.second.find(R"("error":"unauthorized")"), std::string::npos) << answer.second;
    EXPECT_NE(answer.second.find("whoami does not accept calls from outsider"), std::string::npos)
        << answer.second;
  }
  EXPECT_TRUE(wait_until(
      [&] {
        return metric(callee, "coromesh_connect_native_handshakes_total",
                      {R"(result="refused")", R"(reason="unauthorized")"}) >= 1;
      },
      5s));
}

TEST_F(NativeMesh, DenyIntentionsHoldBetweenNativeServicesAndConsulsProxy) {
  // A native caller denied at Consul's inbound proxy.
  auto& plain = plain_whoami("via-consul-proxy");
  const auto ports = free_ports(2);
  auto inbound = consul_connect_proxy(
      consul_, logs_.path(), "whoami-consul-proxy",
      {"-service", "whoami", "-service-addr", "127.0.0.1:" + std::to_string(plain.port()),
       "-listen", "127.0.0.1:" + std::to_string(ports[0]), "-register"});
  deny("intruder", "whoami");
  auto& friendly = native_caller("friendly");
  auto& allowed = friendly.client(whoami);
  ASSERT_TRUE(first_reply(friendly, allowed)) << last_error_ << inbound->log_tail();
  auto& intruder = native_caller("intruder");
  auto& refused = intruder.client(whoami);
  EXPECT_FALSE(first_reply(intruder, refused, 5s)) << "Consul's proxy let a denied caller in";

  // Consul's upstream listener, for a denied service, refused by a native service.
  auto& native = keep(start_whoami(consul_, config::MeshMode::native));
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 2); }, 30s));
  deny("outsider", "whoami");
  auto outbound = consul_connect_proxy(
      consul_, logs_.path(), "outsider-consul-proxy",
      {"-service", "outsider", "-upstream", "whoami:" + std::to_string(ports[1])});
  EXPECT_TRUE(wait_until(
      [&] {
        HttpConnection(ports[1]).request("GET", "/api/v1/whoami");
        return metric(native, "coromesh_connect_native_handshakes_total",
                      {R"(result="refused")", R"(reason="unauthorized")"}) >= 1;
      },
      30s, 200ms))
      << outbound->log_tail();
  int answered = 0;
  for (int i = 0; i < 10; ++i) {
    const auto answer = HttpConnection(ports[1]).request("GET", "/api/v1/whoami");
    answered +=
        answer.first == 200 && answer.second.find(native.instance_id()) != std::string::npos;
  }
  EXPECT_EQ(answered, 0) << "the native service answered a denied caller";
}

TEST_F(NativeMesh, ACaRootRotationDoesNotBreakLiveTraffic) {
  auto& callee = native_whoami();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 1); }, 30s));
  auto& caller = native_caller("caller");
  auto& client = caller.client(whoami);
  ASSERT_TRUE(first_reply(caller, client)) << last_error_;
  const auto expiry_before =
      metric(callee, "coromesh_connect_native_leaf_expiry_timestamp_seconds", {});

  rotate_ca_root(consul_);
  expect_calls_survive_rotation(
      caller, client,
      [&] {
        return metric(callee, "coromesh_connect_native_leaf_expiry_timestamp_seconds", {}) !=
                   expiry_before &&
               metric(caller, "coromesh_connect_native_leaf_expiry_timestamp_seconds", {}) != 0;
      },
      "the callee took a leaf of the new root");
  // A new caller, which only ever had the new root's leaf, is served too.
  auto& later = native_caller("later");
  auto& later_client = later.client(whoami);
  EXPECT_TRUE(first_reply(later, later_client)) << last_error_;
}

// The same through a coromesh-sidecar: a native caller keeps reaching the sidecar-fronted
// service while both take leaves of the new root.
TEST_F(NativeMesh, ACaRootRotationKeepsNativeToSidecarTrafficFlowing) {
  auto& plain = plain_whoami("via-sidecar");
  auto& sidecar = whoami_sidecar(plain);
  auto& caller = native_caller("caller");
  auto& client = caller.client(whoami);
  ASSERT_TRUE(first_reply(caller, client)) << last_error_ << sidecar.log_tail();
  const auto sidecar_expiry_before =
      sidecar.metric("coromesh_sidecar_leaf_expiry_timestamp_seconds");
  const auto caller_expiry_before =
      metric(caller, "coromesh_connect_native_leaf_expiry_timestamp_seconds", {});

  rotate_ca_root(consul_);
  expect_calls_survive_rotation(
      caller, client,
      [&] {
        return sidecar.metric("coromesh_sidecar_leaf_expiry_timestamp_seconds") !=
                   sidecar_expiry_before &&
               metric(caller, "coromesh_connect_native_leaf_expiry_timestamp_seconds", {}) !=
                   caller_expiry_before;
      },
      "both ends took a leaf of the new root");
}

// A CA root rotation while new connections keep coming through a proxy's upstream
// listener (each request a fresh connection, so a fresh handshake with whatever leaves
// the two ends hold): `upstream` is coromesh-sidecar's or `consul connect proxy`'s.
void expect_rotation_keeps_upstream_traffic(const ConsulAgent& consul, Service& callee,
                                            std::uint16_t upstream_port,
                                            const std::function<double()>& proxy_generation) {
  const auto callee_expiry_before = metric_sum(
      callee.metrics().render(), "coromesh_connect_native_leaf_expiry_timestamp_seconds", {});
  const auto proxy_before = proxy_generation();
  rotate_ca_root(consul);
  int calls = 0;
  int failures = 0;
  std::string last;
  const bool rotated = wait_until(
      [&] {
        const auto reply = HttpConnection(upstream_port).request("GET", "/api/v1/whoami");
        ++calls;
        if (reply.first != 200) {
          ++failures;
          last = std::to_string(reply.first) + " " + reply.second;
        }
        return metric_sum(callee.metrics().render(),
                          "coromesh_connect_native_leaf_expiry_timestamp_seconds",
                          {}) != callee_expiry_before &&
               proxy_generation() != proxy_before;
      },
      90s, 200ms);
  // Which end did not, and whether its agent had a new leaf for it (Consul re-signs
  // leaves after a rotation, spread over a jitter window).
  const auto callee_leaf = consul.api("GET", "/v1/agent/connect/ca/leaf/whoami");
  std::string agent_leaf = std::to_string(callee_leaf.status);
  if (callee_leaf.status == 200) {
    const auto leaf = json::parse(callee_leaf.body).as_object();
    for (const auto* field : {"SerialNumber", "ValidAfter", "ValidBefore"}) {
      agent_leaf += std::string(" ") + field + "=" + json::serialize(leaf.at(field));
    }
  }
  EXPECT_TRUE(rotated) << "both ends took a leaf of the new root: callee's leaf expiry "
                       << callee_expiry_before << " -> "
                       << metric_sum(callee.metrics().render(),
                                     "coromesh_connect_native_leaf_expiry_timestamp_seconds", {})
                       << ", the proxy's " << proxy_before << " -> " << proxy_generation()
                       << "; the agent's leaf for whoami: " << agent_leaf;
  EXPECT_EQ(failures, 0) << "of " << calls << " requests; last: " << last;
}

TEST_F(NativeMesh, ACaRootRotationKeepsSidecarToNativeTrafficFlowing) {
  auto& callee = native_whoami();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 1); }, 30s));
  const auto upstream_port = free_port();
  SidecarProcess sidecar(
      consul_, logs_.path(), "caller-sidecar",
      {"--service", "caller", "--upstream", "whoami:" + std::to_string(upstream_port)});
  ASSERT_TRUE(wait_until(
      [&] { return HttpConnection(upstream_port).request("GET", "/api/v1/whoami").first == 200; },
      30s, 200ms))
      << sidecar.log_tail();
  expect_rotation_keeps_upstream_traffic(consul_, callee, upstream_port, [&] {
    return sidecar.metric("coromesh_sidecar_leaf_expiry_timestamp_seconds");
  });
}

// Consul's proxy takes its leaves from its agent: the agent's leaf for that service tells
// when the proxy has one of the new root.
std::function<double()> agent_leaf_serial_hash(const ConsulAgent& consul, std::string service) {
  return [&consul, service = std::move(service)] {
    const auto leaf = consul.api("GET", "/v1/agent/connect/ca/leaf/" + service);
    return static_cast<double>(std::hash<std::string>{}(leaf.status == 200 ? leaf.body : ""));
  };
}

TEST_F(NativeMesh, ACaRootRotationKeepsConsulProxyToNativeTrafficFlowing) {
  auto& callee = native_whoami();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 1); }, 30s));
  const auto upstream_port = free_port();
  auto outbound = consul_connect_proxy(
      consul_, logs_.path(), "other-consul-proxy",
      {"-service", "other", "-upstream", "whoami:" + std::to_string(upstream_port)});
  ASSERT_TRUE(wait_until(
      [&] { return HttpConnection(upstream_port).request("GET", "/api/v1/whoami").first == 200; },
      30s, 200ms))
      << outbound->log_tail();
  expect_rotation_keeps_upstream_traffic(consul_, callee, upstream_port,
                                         agent_leaf_serial_hash(consul_, "other"));
}

TEST_F(NativeMesh, ACaRootRotationKeepsNativeToConsulProxyTrafficFlowing) {
  auto& plain = plain_whoami("via-consul-proxy");
  const auto listen_port = free_port();
  auto inbound = consul_connect_proxy(
      consul_, logs_.path(), "whoami-consul-proxy",
      {"-service", "whoami", "-service-addr", "127.0.0.1:" + std::to_string(plain.port()),
       "-listen", "127.0.0.1:" + std::to_string(listen_port), "-register"});
  auto& caller = native_caller("caller");
  auto& client = caller.client(whoami);
  ASSERT_TRUE(first_reply(caller, client)) << last_error_ << inbound->log_tail();
  const auto proxy_leaf = agent_leaf_serial_hash(consul_, "whoami");
  const auto proxy_before = proxy_leaf();
  const auto caller_expiry_before =
      metric(caller, "coromesh_connect_native_leaf_expiry_timestamp_seconds", {});

  rotate_ca_root(consul_);
  expect_calls_survive_rotation(
      caller, client,
      [&] {
        return proxy_leaf() != proxy_before &&
               metric(caller, "coromesh_connect_native_leaf_expiry_timestamp_seconds", {}) !=
                   caller_expiry_before;
      },
      "both ends took a leaf of the new root");
}

}  // namespace
}  // namespace coromesh::testing
