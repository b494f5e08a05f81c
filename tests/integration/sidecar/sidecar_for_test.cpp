// coromesh-sidecar -sidecar-for against a real Consul dev agent: the connect-proxy
// registration is the operator's; the sidecar finds it, follows it with blocking queries
// and registers only its admin port, where Prometheus finds it.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <csignal>
#include <iostream>

#include "mesh_fixture.hpp"
#include "prometheus_server.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

// A kept-alive client connection on a raw socket, to see what a connection pool sees: an
// answer's Connection header, and the sidecar closing the connection between requests.
class KeptAliveConnection {
 public:
  struct Answer {
    int status = 0;      // 0: no answer (closed, or nothing within the timeout)
    bool close = false;  // the answer said Connection: close
  };

  explicit KeptAliveConnection(std::uint16_t port) : fd_(connect_blocking(port, 5s)) {}
  ~KeptAliveConnection() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  KeptAliveConnection(const KeptAliveConnection&) = delete;
  KeptAliveConnection& operator=(const KeptAliveConnection&) = delete;

  bool send(const std::string& target) {
    const std::string request = "GET " + target + " HTTP/1.1\r\nHost: upstream\r\n\r\n";
    return fd_ >= 0 && ::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) ==
                           static_cast<ssize_t>(request.size());
  }

  // Reads one answer (the socket's receive timeout, 5 s, bounds each wait).
  Answer read_answer() {
    namespace bhttp = boost::beast::http;
    bhttp::response_parser<bhttp::string_body> parser;
    boost::system::error_code ec;
    while (!parser.is_done()) {
      if (buffer_.empty() && !receive()) {
        return {};
      }
      buffer_.erase(0, parser.put(boost::asio::buffer(buffer_), ec));
      if (ec == bhttp::error::need_more) {
        if (!receive()) {
          return {};
        }
      } else if (ec) {
        return {};
      }
    }
    return {static_cast<int>(parser.get().result_int()), !parser.get().keep_alive()};
  }

  Answer get(const std::string& target) { return send(target) ? read_answer() : Answer{}; }

  // Whether the sidecar closes the connection (end of stream, or a reset) within the
  // socket's receive timeout, sending nothing more.
  bool closed_by_peer() {
    char byte = 0;
    const auto n = ::recv(fd_, &byte, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  bool receive() {
    char chunk[4096];
    const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_;
  std::string buffer_;
};

// Whether nothing listens on `port` any more.
bool refused(std::uint16_t port) {
  const int fd = connect_blocking(port, 1s);
  if (fd >= 0) {
    ::close(fd);
  }
  return fd < 0;
}

class SidecarFor : public ::testing::Test {
 protected:
  // `service`'s own sidecar (standalone form, registering itself) in front of the backend
  // at `address`: what e's upstreams reach.
  std::unique_ptr<SidecarProcess> sidecar_in_front_of(const std::string& service,
                                                      const std::string& address,
                                                      std::uint16_t port) {
    return std::make_unique<SidecarProcess>(
        consul_, logs_.path(), service + "-sidecar",
        std::vector<std::string>{"--service", service, "--service-addr", address, "--listen",
                                 "127.0.0.1:" + std::to_string(port), "--register"});
  }

  // One upstream of e: its destination, local bind port and Config.protocol ("" for tcp).
  // Consul refuses two upstreams to the same destination.
  struct Upstream {
    std::string service;
    std::uint16_t port;
    std::string protocol;
  };

  // Registers service e-1 (on `port`) whose sidecar (on `sidecar_port`) has `upstreams`;
  // returns the agent's status.
  int register_e_with_upstreams(std::uint16_t port, std::uint16_t sidecar_port,
                                const std::vector<Upstream>& upstreams) {
    json::array list;
    for (const auto& upstream : upstreams) {
      json::object entry{{"DestinationName", upstream.service}, {"LocalBindPort", upstream.port}};
      if (!upstream.protocol.empty()) {
        entry["Config"] = json::object{{"protocol", upstream.protocol}};
      }
      list.push_back(std::move(entry));
    }
    json::object body{
        {"Name", "e"},
        {"ID", "e-1"},
        {"Port", port},
        {"Connect",
         json::object{{"SidecarService",
                       json::object{{"Port", sidecar_port},
                                    {"Proxy", json::object{{"Upstreams", std::move(list)}}}}}}}};
    return consul_.api("PUT", "/v1/agent/service/register", json::serialize(body)).status;
  }

  // The same with one tcp upstream, to b, bound on `upstream_port`.
  int register_e_with_upstream_b(std::uint16_t port, std::uint16_t sidecar_port,
                                 std::uint16_t upstream_port) {
    return register_e_with_upstreams(port, sidecar_port, {{"b", upstream_port, ""}});
  }

  // A request in flight through an http-mode upstream of e's sidecar to b (whose backend
  // holds /slow for 2 s) when the registration change that removes that upstream lands.
  struct InFlight {
    std::unique_ptr<TaggedHttpServer> b = std::make_unique<TaggedHttpServer>("b1");
    std::unique_ptr<TaggedHttpServer> e = std::make_unique<TaggedHttpServer>("e1");
    std::unique_ptr<SidecarProcess> b_sidecar, e_sidecar;
    std::unique_ptr<KeptAliveConnection> connection;
  };
  void remove_an_upstream_with_a_request_in_flight(InFlight& in_flight) {
    const auto ports = free_ports(3);
    const std::uint16_t e_public = ports[0], removed_http = ports[1];
    in_flight.b_sidecar = sidecar_in_front_of("b", in_flight.b->address(), ports[2]);
    ASSERT_EQ(
        register_e_with_upstreams(in_flight.e->port(), e_public, {{"b", removed_http, "http"}}),
        200);
    in_flight.e_sidecar = std::make_unique<SidecarProcess>(
        consul_, logs_.path(), "e-sidecar",
        std::vector<std::string>{"-sidecar-for", "e-1", "--registration-poll", "30s"});
    auto& e_sidecar = *in_flight.e_sidecar;
    ASSERT_TRUE(wait_until(
        [&] { return HttpConnection(removed_http).request("GET", "/ready").first == 200; }, 30s))
        << e_sidecar.log_tail();
    in_flight.connection = std::make_unique<KeptAliveConnection>(removed_http);
    ASSERT_EQ(in_flight.connection->get("/warm").status, 200) << e_sidecar.log_tail();

    const int before = in_flight.b->requests();
    ASSERT_TRUE(in_flight.connection->send("/hold/in-flight"));
    ASSERT_TRUE(wait_until([&] { return in_flight.b->requests() > before; }, 5s, 5ms))
        << "the request never reached the backend: " << e_sidecar.log_tail();
    ASSERT_EQ(register_e_with_upstreams(in_flight.e->port(), e_public, {}), 200);
    ASSERT_TRUE(wait_until([&] { return refused(removed_http); }, 10s, 5ms))
        << "the removed upstream's listener is closed: " << e_sidecar.log_tail();
    in_flight.b->release_held();  // the backend answers once the removal has landed
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-sidecar-test"};
};

TEST_F(SidecarFor, ReadsTheRegistrationAndAppliesNewUpstreamsWithoutRestart) {
  TaggedEchoServer b("b1"), e("e1");
  const auto ports = free_ports(4);
  const std::uint16_t b_public = ports[0], e_public = ports[1], e_to_b = ports[2],
                      e_to_b_later = ports[3];
  auto b_sidecar = sidecar_in_front_of("b", b.address(), b_public);
  auto register_e = [&](std::uint16_t upstream_port) {
    return register_e_with_upstream_b(e.port(), e_public, upstream_port);
  };
  ASSERT_EQ(register_e(e_to_b), 200);
  // A 30s poll would miss every deadline below: the registration is followed with
  // blocking queries, the poll is only the fallback of an agent that cannot block.
  SidecarProcess e_sidecar(consul_, logs_.path(), "e-sidecar",
                           {"-sidecar-for", "e-1", "--registration-poll", "30s"});
  EXPECT_TRUE(reaches(e_to_b, {"b1"})) << e_sidecar.log_tail();

  ASSERT_EQ(register_e(e_to_b_later), 200);
  const auto changed = std::chrono::steady_clock::now();
  EXPECT_TRUE(reaches(e_to_b_later, {"b1"}, 5s)) << e_sidecar.log_tail();
  std::cout << "new upstream reachable after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - changed)
                   .count()
            << " ms\n";
  EXPECT_TRUE(wait_until([&] { return exchange(e_to_b, "ping", 1s).empty(); }, 5s))
      << "the upstream removed from the registration is closed";
  EXPECT_TRUE(e_sidecar.process().running());
}

// A live change whose new upstream cannot bind (its port is taken) is logged and passed
// over, and the registration is followed on: a later change is applied. Here the failing
// upstream replaces the only one, so no listener is left open when the bind fails.
TEST_F(SidecarFor, AnUpstreamThatCannotBindLeavesTheRegistrationFollowed) {
  TaggedEchoServer b("b1"), e("e1");
  const auto ports = free_ports(4);
  const std::uint16_t b_public = ports[0], e_public = ports[1], e_to_b = ports[2],
                      e_to_b_later = ports[3];
  auto b_sidecar = sidecar_in_front_of("b", b.address(), b_public);
  auto register_e = [&](std::uint16_t upstream_port) {
    return register_e_with_upstream_b(e.port(), e_public, upstream_port);
  };
  ASSERT_EQ(register_e(e_to_b), 200);
  SidecarProcess e_sidecar(consul_, logs_.path(), "e-sidecar",
                           {"-sidecar-for", "e-1", "--registration-poll", "30s"});
  ASSERT_TRUE(reaches(e_to_b, {"b1"})) << e_sidecar.log_tail();

  // Someone else listens on the port the next registration names.
  TaggedEchoServer squatter("squatter");
  ASSERT_EQ(register_e(squatter.port()), 200);
  EXPECT_TRUE(wait_until(
      [&] {
        return e_sidecar.log_tail(64 * 1024).find("sidecar.upstream.bind_failed") !=
               std::string::npos;
      },
      10s))
      << e_sidecar.log_tail();

  ASSERT_EQ(register_e(e_to_b_later), 200);
  EXPECT_TRUE(reaches(e_to_b_later, {"b1"}, 10s))
      << "the change after a failed bind was not applied: " << e_sidecar.log_tail(16 * 1024);
  EXPECT_TRUE(e_sidecar.process().running());
}

// An upstream that a live registration change removes is drained as a whole sidecar
// drains, for its own connections only: an http-mode kept-alive connection waiting for
// its next request is closed at once (it used to go on forwarding to the removed
// upstream's endpoints until it idled out, 10 min by default), a tcp-mode connection
// runs on to its natural end, and the connections of the upstream that stays are not
// touched.
TEST_F(SidecarFor, RemovingAnUpstreamClosesItsKeptAliveHttpConnectionsAtOnce) {
  TaggedHttpServer b("b1"), c("c1"), d("d1"), e("e1");
  const auto ports = free_ports(7);
  const std::uint16_t e_public = ports[0], removed_http = ports[1], kept_http = ports[2],
                      removed_tcp = ports[3];
  auto b_sidecar = sidecar_in_front_of("b", b.address(), ports[4]);
  auto c_sidecar = sidecar_in_front_of("c", c.address(), ports[5]);
  auto d_sidecar = sidecar_in_front_of("d", d.address(), ports[6]);
  ASSERT_EQ(register_e_with_upstreams(
                e.port(), e_public,
                {{"b", removed_http, "http"}, {"c", kept_http, "http"}, {"d", removed_tcp, ""}}),
            200);
  SidecarProcess e_sidecar(consul_, logs_.path(), "e-sidecar",
                           {"-sidecar-for", "e-1", "--registration-poll", "30s"});
  for (const auto port : {removed_http, kept_http, removed_tcp}) {
    ASSERT_TRUE(
        wait_until([&] { return HttpConnection(port).request("GET", "/ready").first == 200; }, 30s))
        << port << e_sidecar.log_tail();
  }
  KeptAliveConnection removed(removed_http), kept(kept_http), tcp(removed_tcp);
  for (auto* connection : {&removed, &kept, &tcp}) {
    const auto answer = connection->get("/one");
    ASSERT_EQ(answer.status, 200) << e_sidecar.log_tail();
    ASSERT_FALSE(answer.close);
  }

  ASSERT_EQ(register_e_with_upstreams(e.port(), e_public, {{"c", kept_http, "http"}}), 200);
  ASSERT_TRUE(wait_until([&] { return refused(removed_http) && refused(removed_tcp); }, 10s))
      << "the removed upstreams' listeners are closed: " << e_sidecar.log_tail();
  EXPECT_TRUE(removed.closed_by_peer())
      << "the removed upstream's kept-alive connection is still open 5 s after the removal: "
      << e_sidecar.log_tail();

  const auto kept_answer = kept.get("/two");
  EXPECT_EQ(kept_answer.status, 200) << "the remaining upstream's connection goes on";
  EXPECT_FALSE(kept_answer.close) << "and is kept alive";
  EXPECT_EQ(tcp.get("/two").status, 200)
      << "a tcp-mode connection of the removed upstream runs on to its natural end";
  EXPECT_TRUE(e_sidecar.process().running());
}

// A request in flight through an upstream that a live registration change removes is
// answered, with Connection: close, and its connection is then closed.
TEST_F(SidecarFor, RemovingAnUpstreamAnswersTheRequestInFlightThenClosesItsConnection) {
  InFlight in_flight;
  ASSERT_NO_FATAL_FAILURE(remove_an_upstream_with_a_request_in_flight(in_flight));
  const auto answer = in_flight.connection->read_answer();
  EXPECT_EQ(answer.status, 200) << in_flight.e_sidecar->log_tail();
  EXPECT_TRUE(answer.close) << "the last answer on a drained connection says Connection: close";
  EXPECT_TRUE(in_flight.connection->closed_by_peer()) << "and the connection is then closed";
}

// The whole sidecar shuts down while a removed upstream still drains: its connection
// with a request in flight is waited for like any other (within --shutdown-grace, 10 s
// here), answered, closed, and nothing is left over.
TEST_F(SidecarFor, AShutdownDuringARemovedUpstreamsDrainWaitsForItsRequestInFlight) {
  InFlight in_flight;
  ASSERT_NO_FATAL_FAILURE(remove_an_upstream_with_a_request_in_flight(in_flight));
  auto& sidecar = *in_flight.e_sidecar;
  sidecar.process().signal(SIGTERM);
  const auto answer = in_flight.connection->read_answer();
  EXPECT_EQ(answer.status, 200) << sidecar.log_tail();
  EXPECT_TRUE(answer.close);
  EXPECT_TRUE(in_flight.connection->closed_by_peer());
  EXPECT_EQ(sidecar.process().wait_exit(10s), 0) << sidecar.log_tail();
  const auto log = sidecar.log_tail(64 * 1024);
  EXPECT_NE(log.find("event=service.shutdown.done cut_off=0 "), std::string::npos) << log;
  EXPECT_EQ(log.find("sidecar.drain.unfinished"), std::string::npos) << log;
}

TEST_F(SidecarFor, FindsAProxyRegisteredUnderAnotherIdByItsDestination) {
  TaggedEchoServer b("b1"), f("f1");
  const auto ports = free_ports(3);
  auto b_sidecar = sidecar_in_front_of("b", b.address(), ports[0]);
  ASSERT_EQ(consul_
                .api("PUT", "/v1/agent/service/register",
                     R"({"Name": "f", "ID": "f-1", "Port": )" + std::to_string(f.port()) + "}")
                .status,
            200);
  json::object proxy{
      {"Kind", "connect-proxy"},
      {"Name", "f-sidecar-proxy"},
      {"ID", "my-own-proxy-id"},
      {"Port", ports[1]},
      {"Proxy",
       json::object{{"DestinationServiceName", "f"},
                    {"DestinationServiceID", "f-1"},
                    {"LocalServicePort", f.port()},
                    {"Upstreams", json::array{json::object{{"DestinationName", "b"},
                                                           {"LocalBindPort", ports[2]}}}}}}};
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/service/register", json::serialize(proxy)).status, 200);
  SidecarProcess f_sidecar(consul_, logs_.path(), "f-sidecar", {"-sidecar-for", "f-1"});
  EXPECT_TRUE(reaches(ports[2], {"b1"})) << f_sidecar.log_tail();

  // Nothing to find: one line naming what is missing, exit 2.
  ChildProcess missing({(binary_dir() / "coromesh-sidecar").string(), "--consul",
                        consul_.http_address(), "-sidecar-for", "nobody"},
                       logs_.path() / "missing.log");
  EXPECT_EQ(missing.wait_exit(10s), 2 << 8);
  EXPECT_NE(missing.log_tail().find("no connect-proxy for nobody"), std::string::npos)
      << missing.log_tail();
}

TEST_F(SidecarFor, RegistersItsAdminPortWherePrometheusFindsIt) {
  TaggedEchoServer g("g1");
  const auto ports = free_ports(2);
  const std::uint16_t g_public = ports[0], admin = ports[1];
  json::object body{
      {"Name", "g"},
      {"ID", "g-1"},
      {"Port", g.port()},
      {"Connect",
       json::object{
           {"SidecarService",
            json::object{{"Port", g_public},
                         {"Proxy", json::object{{"Config", json::object{{"coromesh_admin_port",
                                                                         admin}}}}}}}}}};
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/service/register", json::serialize(body)).status, 200);
  PrometheusServer prometheus(PrometheusOptions{.consul_address = consul_.http_address()});
  // No --port: the admin port comes from Proxy.Config.coromesh_admin_port.
  ChildProcess g_sidecar(
      {(binary_dir() / "coromesh-sidecar").string(), "--consul", consul_.http_address(),
       "--consul-check-interval", "1s", "-sidecar-for", "g-1"},
      logs_.path() / "g-sidecar.log");
  ASSERT_TRUE(wait_until(
      [&] { return http_fetch("127.0.0.1", admin, "/health", {.timeout = 1s}).status == 200; },
      15s))
      << g_sidecar.log_tail();

  const auto registered = consul_.api("GET", "/v1/agent/service/g-1-sidecar-proxy-admin");
  ASSERT_EQ(registered.status, 200) << registered.body;
  const auto admin_registration = json::parse(registered.body);
  EXPECT_EQ(admin_registration.at("Service"), "g-sidecar-proxy-admin");
  EXPECT_EQ(admin_registration.at("Port"), admin);
  EXPECT_EQ(admin_registration.at("Meta").at("proxy_id"), "g-1-sidecar-proxy");
  EXPECT_EQ(admin_registration.at("Meta").at("metrics_port"), json::value(std::to_string(admin)));
  EXPECT_EQ(admin_registration.at("Tags").at(0), "metrics");
  const auto sample = prometheus.wait_for_sample(
      R"(coromesh_sidecar_tls_material_generation{job="coromesh",instance="g-1-sidecar-proxy-admin"})",
      60s);
  EXPECT_TRUE(sample) << "Prometheus never scraped the sidecar through consul_sd_configs";

  // On stop it leaves Consul; the operator's connect-proxy registration stays.
  EXPECT_EQ(g_sidecar.stop(10s), 0) << g_sidecar.log_tail();
  EXPECT_EQ(consul_.api("GET", "/v1/agent/service/g-1-sidecar-proxy-admin").status, 404);
  EXPECT_EQ(consul_.api("GET", "/v1/agent/service/g-1-sidecar-proxy").status, 200);
}

}  // namespace
}  // namespace coromesh::testing
