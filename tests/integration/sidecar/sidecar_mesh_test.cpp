// Traffic through coromesh-sidecar pairs and `consul connect proxy`, against a real
// Consul dev agent (Connect on, intentions default allow): A's upstream listener -> B's
// public mTLS listener -> B, with Consul-issued certificates.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <map>
#include <random>
#include <thread>

#include "black_hole.hpp"
#include "mesh_fixture.hpp"
#include "test_certificate_authority.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

class SidecarMesh : public ::testing::Test {
 protected:
  // A sidecar in front of `backend` for `service`, registering itself.
  std::unique_ptr<SidecarProcess> sidecar(const std::string& log_name, const std::string& service,
                                          const TaggedEchoServer& backend,
                                          std::uint16_t public_port,
                                          std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--service",
                                  service,
                                  "--service-addr",
                                  backend.address(),
                                  "--listen",
                                  "127.0.0.1:" + std::to_string(public_port),
                                  "--register",
                                  "--handshake-timeout",
                                  "1s"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<SidecarProcess>(consul_, logs_.path(), log_name, args);
  }

  // A's sidecar with an upstream to B's, each in front of its backend: the pair most
  // tests here start from. `upstream` is A's listener for b.
  struct Pair {
    std::unique_ptr<SidecarProcess> b_sidecar, a_sidecar;
    std::uint16_t upstream = 0;
  };
  Pair a_to_b(const TaggedEchoServer& a, const TaggedEchoServer& b) {
    const auto ports = free_ports(3);
    Pair pair{.b_sidecar = sidecar("b-sidecar", "b", b, ports[0]),
              .a_sidecar = sidecar("a-sidecar", "a", a, ports[1],
                                   {"--upstream", "b:" + std::to_string(ports[2])}),
              .upstream = ports[2]};
    return pair;
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-sidecar-test"};
};

TEST_F(SidecarMesh, CarriesBytesBothWaysThroughTwoSidecarsAndDeregistersOnStop) {
  TaggedEchoServer a("a"), b("b1");
  const auto ports = free_ports(3);
  const std::uint16_t b_public = ports[0], a_public = ports[1], a_upstream = ports[2];
  auto b_sidecar = sidecar("b-sidecar", "b", b, b_public);
  auto a_sidecar =
      sidecar("a-sidecar", "a", a, a_public, {"--upstream", "b:" + std::to_string(a_upstream)});
  ASSERT_TRUE(reaches(a_upstream, {"b1"})) << a_sidecar->log_tail() << b_sidecar->log_tail();

  // A MiB each way, with the client's half-close carried through both sidecars: the
  // backend answers only once it has read the end of the stream.
  std::string payload(1 << 20, '\0');
  std::mt19937 random(7);
  for (auto& c : payload) {
    c = static_cast<char>(random());
    if (c == '\n') {
      c = 'x';  // a newline would end the request early (see TaggedEchoServer)
    }
  }
  EXPECT_TRUE(exchange(a_upstream, payload, 10s) == "b1:" + payload) << "the MiB came back intact";

  // The registrations are connect-proxies with the fields Consul's own proxies use.
  const auto b_registration =
      json::parse(consul_.api("GET", "/v1/agent/service/b-sidecar-proxy").body);
  EXPECT_EQ(b_registration.at("Kind"), "connect-proxy");
  EXPECT_EQ(b_registration.at("Port"), b_public);
  EXPECT_EQ(b_registration.at("Proxy").at("DestinationServiceName"), "b");
  EXPECT_EQ(b_registration.at("Proxy").at("LocalServicePort"), b.port());
  const auto a_registration =
      json::parse(consul_.api("GET", "/v1/agent/service/a-sidecar-proxy").body);
  EXPECT_EQ(a_registration.at("Proxy").at("Upstreams").at(0).at("DestinationName"), "b");
  EXPECT_EQ(a_registration.at("Proxy").at("Upstreams").at(0).at("LocalBindPort"), a_upstream);
  EXPECT_TRUE(connect_endpoints_passing(consul_, "b", 1));

  EXPECT_GE(a_sidecar->metric("coromesh_sidecar_upstream_connections_total", {R"(upstream="b")"}),
            2);
  EXPECT_EQ(a_sidecar->metric("coromesh_sidecar_upstream_endpoints", {R"(upstream="b")"}), 1);
  EXPECT_GE(a_sidecar->metric("coromesh_sidecar_upstream_connect_duration_seconds_count"), 2);
  EXPECT_GT(a_sidecar->metric("coromesh_sidecar_leaf_expiry_timestamp_seconds"),
            static_cast<double>(std::time(nullptr)));
  EXPECT_GE(b_sidecar->metric("coromesh_sidecar_handshakes_total", {R"(result="accepted")"}), 2);
  EXPECT_GE(b_sidecar->metric("coromesh_sidecar_bytes_total",
                              {R"(listener="inbound")", R"(direction="from_client")"}),
            1 << 20);
  EXPECT_GE(b_sidecar->metric("coromesh_sidecar_bytes_total",
                              {R"(listener="inbound")", R"(direction="to_client")"}),
            1 << 20);

  // SIGTERM: a clean exit that leaves Consul.
  EXPECT_EQ(b_sidecar->process().stop(10s), 0) << b_sidecar->log_tail();
  EXPECT_EQ(consul_.api("GET", "/v1/agent/service/b-sidecar-proxy").status, 404);
}

// Consul takes any host name as a service's Address; `consul connect proxy` dials such an
// endpoint by resolving it, and so does the http mode (http::Client). The tcp mode must
// too, rather than refuse the endpoint as a "bad_address" and hold that against it.
TEST_F(SidecarMesh, ReachesAnEndpointRegisteredUnderAHostName) {
  TaggedEchoServer a("a"), b("b1");
  const auto ports = free_ports(3);
  const std::uint16_t b_public = ports[0], a_public = ports[1], a_upstream = ports[2];
  // B's sidecar, registered by hand (no --register) with a host name for its address.
  SidecarProcess b_sidecar(consul_, logs_.path(), "b-sidecar",
                           {"--service", "b", "--service-addr", b.address(), "--listen",
                            "127.0.0.1:" + std::to_string(b_public)});
  json::object proxy{
      {"Kind", "connect-proxy"},
      {"Name", "b-sidecar-proxy"},
      {"ID", "b-by-name"},
      {"Address", "localhost"},
      {"Port", b_public},
      {"Proxy", json::object{{"DestinationServiceName", "b"}, {"LocalServicePort", b.port()}}}};
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/service/register", json::serialize(proxy)).status, 200);
  auto a_sidecar =
      sidecar("a-sidecar", "a", a, a_public, {"--upstream", "b:" + std::to_string(a_upstream)});
  EXPECT_TRUE(reaches(a_upstream, {"b1"}, 15s)) << a_sidecar->log_tail() << b_sidecar.log_tail();
  EXPECT_EQ(a_sidecar->metric("coromesh_sidecar_upstream_connect_failures_total",
                              {R"(reason="bad_address")"}),
            0);
}

// With the agent gone, a caller B's sidecar has never decided on is refused (failing
// closed), and counted as what it is: Consul could not be asked, not an intention that
// denies A (which an operator would go and fix).
TEST_F(SidecarMesh, ACallerConsulCouldNotDecideOnIsNotCountedAsDeniedByTheIntentions) {
  TaggedEchoServer a("a"), b("b1");
  auto [b_sidecar, a_sidecar, upstream] = a_to_b(a, b);
  // A has B's endpoint and its own leaf, B its leaf; no connection yet, so B has no
  // decision about A to fall back on.
  ASSERT_TRUE(wait_until(
      [&] {
        return a_sidecar->metric("coromesh_sidecar_upstream_endpoints") == 1 &&
               a_sidecar->metric("coromesh_sidecar_tls_material_generation") >= 1 &&
               b_sidecar->metric("coromesh_sidecar_tls_material_generation") >= 1;
      },
      30s))
      << a_sidecar->log_tail() << b_sidecar->log_tail();
  consul_.stop();
  EXPECT_EQ(exchange(upstream, "ping", 5s), "") << "refused: nothing to go on";
  EXPECT_TRUE(wait_until(
      [&] {
        return b_sidecar->metric(
                   "coromesh_sidecar_handshakes_total",
                   {R"(result="refused")", R"(reason="authorization_unavailable")"}) >= 1;
      },
      10s))
      << b_sidecar->metrics() << b_sidecar->log_tail();
  EXPECT_EQ(b_sidecar->metric("coromesh_sidecar_handshakes_total",
                              {R"(result="refused")", R"(reason="unauthorized")"}),
            0)
      << "no intention denied A" << b_sidecar->metrics();
  EXPECT_GE(b_sidecar->metric("coromesh_sidecar_authorization_denials_total",
                              {R"(source="unavailable")"}),
            1);
}

TEST_F(SidecarMesh, ADenyIntentionRefusesNewConnectionsAndDeletingItRestoresThem) {
  TaggedEchoServer a("a"), b("b1");
  auto [b_sidecar, a_sidecar, upstream] = a_to_b(a, b);
  ASSERT_TRUE(reaches(upstream, {"b1"})) << a_sidecar->log_tail() << b_sidecar->log_tail();

  ASSERT_EQ(consul_
                .api("PUT", "/v1/connect/intentions/exact?source=a&destination=b",
                     R"({"Action": "deny"})")
                .status,
            200);
  // The authorizer caches a decision for a second.
  EXPECT_TRUE(wait_until([&] { return exchange(upstream, "ping", 2s).empty(); }, 10s, 200ms));
  EXPECT_EQ(exchange(upstream, "ping", 2s), "") << "every new connection is refused";
  EXPECT_GE(b_sidecar->metric("coromesh_sidecar_authorization_denials_total"), 2);
  EXPECT_GE(b_sidecar->metric("coromesh_sidecar_handshakes_total",
                              {R"(result="refused")", R"(reason="unauthorized")"}),
            2);

  ASSERT_EQ(consul_.api("DELETE", "/v1/connect/intentions/exact?source=a&destination=b").status,
            200);
  EXPECT_TRUE(reaches(upstream, {"b1"}, 10s)) << b_sidecar->log_tail();
}

TEST_F(SidecarMesh, TwoInstancesShareTheConnectionsRoundRobin) {
  TaggedEchoServer a("a"), b1("b1"), b2("b2");
  const auto ports = free_ports(4);
  auto b1_sidecar = sidecar("b1-sidecar", "b", b1, ports[0]);
  // Two instances of b on one agent need distinct IDs.
  auto b2_sidecar = std::make_unique<SidecarProcess>(
      consul_, logs_.path(), "b2-sidecar",
      std::vector<std::string>{"--service", "b", "--service-addr", b2.address(), "--listen",
                               "127.0.0.1:" + std::to_string(ports[1]), "--register",
                               "--instance-id", "b2-sidecar-proxy"});
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "b", 2); }, 30s))
      << consul_.api("GET", "/v1/health/connect/b").body;
  auto a_sidecar =
      sidecar("a-sidecar", "a", a, ports[2], {"--upstream", "b:" + std::to_string(ports[3])});
  ASSERT_TRUE(wait_until(
      [&] { return a_sidecar->metric("coromesh_sidecar_upstream_endpoints") == 2; }, 30s));

  std::map<std::string, int> answers;
  for (int i = 0; i < 200; ++i) {
    ++answers[exchange(ports[3], "x")];
  }
  EXPECT_EQ(answers["b1:x"] + answers["b2:x"], 200) << "every connection answered";
  EXPECT_GE(answers["b1:x"], 80);
  EXPECT_GE(answers["b2:x"], 80);

  // Stopping one instance (SIGTERM: it leaves Consul first) moves every new connection to
  // the other within one health interval (1s here).
  EXPECT_EQ(b2_sidecar->process().stop(10s), 0);
  EXPECT_TRUE(wait_until(
      [&] { return a_sidecar->metric("coromesh_sidecar_upstream_endpoints") == 1; }, 2s));
  int moved = 0;
  for (int i = 0; i < 50; ++i) {
    moved += exchange(ports[3], "x") == "b1:x" ? 1 : 0;
  }
  EXPECT_EQ(moved, 50) << a_sidecar->log_tail();
}

// The proxy's health follows its service even when the service is gone from Consul (a
// SIGKILLed instance whose registration the agent reaped): an alias check of a service
// that no longer exists reads "No checks found." and passes, so a connect-proxy with only
// that check stayed a healthy endpoint in front of a dead port.
TEST_F(SidecarMesh, AProxyWhoseServiceDiedAndLeftConsulIsNoLongerPassing) {
  auto backend = std::make_unique<TaggedEchoServer>("b1");
  const auto ports = free_ports(1);
  const std::string registration =
      R"({"ID": "b-1", "Name": "b", "Address": "127.0.0.1", "Port": )" +
      std::to_string(backend->port()) + R"(, "Check": {"CheckID": "b-1-ttl", "TTL": "1m"}})";
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/service/register", registration).status, 200);
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/check/pass/b-1-ttl").status, 200);
  auto b_sidecar = sidecar("b-sidecar", "b", *backend, ports[0], {"--service-id", "b-1"});
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "b", 1); }, 30s))
      << consul_.api("GET", "/v1/health/connect/b").body;

  backend.reset();  // the instance dies: its port refuses connections
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/check/fail/b-1-ttl").status, 200);
  std::this_thread::sleep_for(1500ms);
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/service/deregister/b-1").status, 200);
  EXPECT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "b", 0); }, 15s))
      << consul_.api("GET", "/v1/health/connect/b").body
      << consul_.api("GET", "/v1/agent/checks").body;
}

TEST_F(SidecarMesh, InteroperatesWithConsulConnectProxyBothWays) {
  TaggedEchoServer a("a"), b("b1"), c("c1");
  const auto ports = free_ports(5);
  const std::uint16_t b_public = ports[0], c_public = ports[1], a_public = ports[2],
                      a_to_c = ports[3], consul_to_b = ports[4];
  // Ours inbound for b; Consul's inbound for c.
  auto b_sidecar = sidecar("b-sidecar", "b", b, b_public);
  auto c_proxy = consul_connect_proxy(consul_, logs_.path(), "c-consul-proxy",
                                      {"-service", "c", "-service-addr", c.address(), "-listen",
                                       "127.0.0.1:" + std::to_string(c_public), "-register"});
  // Our upstream listener dialing Consul's inbound proxy.
  auto a_sidecar =
      sidecar("a-sidecar", "a", a, a_public, {"--upstream", "c:" + std::to_string(a_to_c)});
  EXPECT_TRUE(reaches(a_to_c, {"c1"}, 30s, true)) << a_sidecar->log_tail() << c_proxy->log_tail();
  std::string payload(256 * 1024, 'z');
  payload.back() = '\n';
  EXPECT_TRUE(exchange(a_to_c, payload, 10s, false) == "c1:" + payload)
      << "256 KiB through Consul's inbound proxy";
  // New connections offer the session of the last one (Go's server may resume it or not):
  // each must work either way.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(exchange(a_to_c, "again\n", 10s, false), "c1:again\n") << a_sidecar->log_tail();
  }

  // Consul's upstream listener dialing our inbound one.
  auto d_proxy =
      consul_connect_proxy(consul_, logs_.path(), "d-consul-proxy",
                           {"-service", "d", "-upstream", "b:" + std::to_string(consul_to_b)});
  EXPECT_TRUE(reaches(consul_to_b, {"b1"}, 30s, true))
      << b_sidecar->log_tail() << d_proxy->log_tail();
  EXPECT_TRUE(exchange(consul_to_b, payload, 10s, false) == "b1:" + payload)
      << "256 KiB from Consul's upstream listener";
  EXPECT_GE(b_sidecar->metric("coromesh_sidecar_handshakes_total", {R"(result="accepted")"}), 2);
}

// Each new connection to an endpoint resumes the TLS session of the one before: both
// sidecars count the resumed handshakes, and the bytes still come from the right place.
TEST_F(SidecarMesh, NewConnectionsToAnEndpointResumeItsLastTlsSession) {
  TaggedEchoServer a("a"), b("b1");
  auto [b_sidecar, a_sidecar, upstream] = a_to_b(a, b);
  ASSERT_TRUE(reaches(upstream, {"b1"})) << a_sidecar->log_tail() << b_sidecar->log_tail();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(exchange(upstream, "n" + std::to_string(i), 5s), "b1:n" + std::to_string(i));
  }
  const std::vector<std::string> resumed{R"(result="accepted")", R"(reason="resumed")"};
  EXPECT_GE(a_sidecar->metric("coromesh_sidecar_handshakes_total", resumed), 9)
      << a_sidecar->metrics();
  EXPECT_GE(b_sidecar->metric("coromesh_sidecar_handshakes_total", resumed), 9)
      << b_sidecar->metrics();
}

TEST_F(SidecarMesh, SigtermDrainsOpenConnectionsThenCutsThemOffAtTheGrace) {
  TaggedEchoServer a("a");
  TaggedHttpServer b("b1");
  const auto ports = free_ports(3);
  auto b_sidecar = std::make_unique<SidecarProcess>(
      consul_, logs_.path(), "b-sidecar",
      std::vector<std::string>{"--service", "b", "--service-addr", b.address(), "--listen",
                               "127.0.0.1:" + std::to_string(ports[0]), "--register",
                               "--shutdown-grace", "3s"});
  auto a_sidecar =
      sidecar("a-sidecar", "a", a, ports[1], {"--upstream", "b:" + std::to_string(ports[2])});
  ASSERT_TRUE(
      wait_until([&] { return HttpConnection(ports[2]).request("GET", "/").first == 200; }, 30s));
  HttpConnection open(ports[2]);
  ASSERT_EQ(open.request("GET", "/before").first, 200);

  b_sidecar->process().signal(SIGTERM);
  // Phase 1 left Consul and closed the public listener; the open connection is served on.
  EXPECT_TRUE(wait_until([&] { return !connect_endpoints_passing(consul_, "b", 1); }, 5s));
  EXPECT_TRUE(wait_until(
      [&] {
        boost::asio::io_context io;
        boost::asio::ip::tcp::socket probe(io);
        boost::system::error_code refused;
        probe.connect({boost::asio::ip::make_address("127.0.0.1"), ports[0]}, refused);
        return static_cast<bool>(refused);
      },
      5s))
      << "the public listener closes once the instance has left Consul";
  EXPECT_EQ(open.request("GET", "/draining").first, 200);
  EXPECT_EQ(HttpConnection(ports[2]).request("GET", "/new").first, 0)
      << "no new connection reaches a draining sidecar";
  // Phase 2: at the grace the rest is cut off and the process exits cleanly.
  EXPECT_EQ(b_sidecar->process().wait_exit(10s), 0) << b_sidecar->log_tail();
  EXPECT_EQ(open.request("GET", "/after").first, 0);
}

// A tcp-mode connection still dialing its upstream (a black-holed endpoint) is in the
// drain's registry: the drain waits for it up to the grace, then cuts it off; the
// aborted dial is not counted as the endpoint's connect failure.
TEST_F(SidecarMesh, ADrainCutsOffAConnectionStillDialingItsUpstream) {
  const BlackHole hole;
  const json::object registration{{"Name", "held"},
                                  {"ID", "held-1"},
                                  {"Address", "127.0.0.1"},
                                  {"Port", hole.port()},
                                  {"Connect", json::object{{"Native", true}}}};
  const auto answer =
      consul_.api("PUT", "/v1/agent/service/register", json::serialize(registration));
  ASSERT_EQ(answer.status, 200) << answer.body;
  const auto port = free_port();
  SidecarProcess draining(consul_, logs_.path(), "draining-sidecar",
                          {"--service", "a", "--upstream", "held:" + std::to_string(port),
                           "--connect-timeout", "60s", "--shutdown-grace", "300ms"});
  ASSERT_TRUE(
      wait_until([&] { return draining.metric("coromesh_sidecar_upstream_endpoints") == 1; }, 30s));
  const int client = connect_blocking(port, 10s);
  ASSERT_GE(client, 0);
  // The dial begins once the sidecar has its leaf: its handshake counter would move only
  // after the dial, so give it time rather than a signal to wait on.
  std::this_thread::sleep_for(1s);
  draining.process().signal(SIGTERM);
  EXPECT_EQ(draining.process().wait_exit(10s), 0) << draining.log_tail();
  char byte = 0;
  EXPECT_EQ(::recv(client, &byte, 1, 0), 0) << "closed by the cut-off";
  ::close(client);
  const auto log = draining.log_tail(64 * 1024);
  EXPECT_NE(log.find("cut_off=1"), std::string::npos) << log;
  EXPECT_EQ(log.find("sidecar.upstream.connect_failed"), std::string::npos)
      << "an aborted dial is not the endpoint's failure: " << log;
  EXPECT_EQ(log.find("sidecar.drain.unfinished"), std::string::npos) << log;
}

TEST_F(SidecarMesh, ACaRootRotationReachesBothSidecarsWithoutCuttingOpenConnections) {
  TaggedEchoServer a("a");
  TaggedHttpServer b("b1");
  const auto ports = free_ports(3);
  auto b_sidecar = std::make_unique<SidecarProcess>(
      consul_, logs_.path(), "b-sidecar",
      std::vector<std::string>{"--service", "b", "--service-addr", b.address(), "--listen",
                               "127.0.0.1:" + std::to_string(ports[0]), "--register"});
  auto a_sidecar =
      sidecar("a-sidecar", "a", a, ports[1], {"--upstream", "b:" + std::to_string(ports[2])});
  ASSERT_TRUE(
      wait_until([&] { return HttpConnection(ports[2]).request("GET", "/").first == 200; }, 30s));
  // A keep-alive connection through both sidecars, opened before the rotation.
  HttpConnection before(ports[2]);
  ASSERT_EQ(before.request("GET", "/before").first, 200);
  const auto a_generation = a_sidecar->metric("coromesh_sidecar_tls_material_generation");
  const auto b_generation = b_sidecar->metric("coromesh_sidecar_tls_material_generation");
  const auto a_expiry = a_sidecar->metric("coromesh_sidecar_leaf_expiry_timestamp_seconds");
  const auto b_expiry = b_sidecar->metric("coromesh_sidecar_leaf_expiry_timestamp_seconds");

  // The built-in CA with a new private key: Consul makes a new root and re-signs leaves.
  json::object config{{"Provider", "consul"}, {"Config", {{"PrivateKey", new_ec_key_pem()}}}};
  const auto answer = consul_.api("PUT", "/v1/connect/ca/configuration", json::serialize(config));
  ASSERT_EQ(answer.status, 200) << answer.body;
  EXPECT_TRUE(wait_until(
      [&] {
        return a_sidecar->metric("coromesh_sidecar_tls_material_generation") > a_generation &&
               b_sidecar->metric("coromesh_sidecar_tls_material_generation") > b_generation;
      },
      10s))
      << "both sidecars took the new roots";
  EXPECT_EQ(HttpConnection(ports[2]).request("GET", "/roots").first, 200)
      << "old leaves, new and old roots trusted";
  // Consul re-signs leaves after a rotation with a random delay of up to a minute.
  EXPECT_TRUE(wait_until(
      [&] {
        return a_sidecar->metric("coromesh_sidecar_leaf_expiry_timestamp_seconds") != a_expiry &&
               b_sidecar->metric("coromesh_sidecar_leaf_expiry_timestamp_seconds") != b_expiry;
      },
      90s, 500ms))
      << "both sidecars picked up a leaf signed by the new root";

  // New connections handshake with the new chain; the old one is not cut.
  EXPECT_EQ(HttpConnection(ports[2]).request("GET", "/after").first, 200)
      << a_sidecar->log_tail() << b_sidecar->log_tail();
  EXPECT_EQ(before.request("GET", "/still").first, 200);
}

}  // namespace
}  // namespace coromesh::testing
