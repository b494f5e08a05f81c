// http-mode upstreams: A's upstream listener speaks HTTP/1.1 and balances each request
// of one client connection over B's instances, through their coromesh sidecars (tcp
// inbound) over Consul-issued mTLS; retries, ejection-worthy failures, headers passed on.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <map>
#include <thread>

#include "hung_server.hpp"
#include "mesh_fixture.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

class SidecarHttpMode : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto ports = free_ports(4);
    a_upstream_ = ports[3];
    b1_sidecar_ = sidecar("b1-sidecar", b1_, ports[0], "b1-sidecar-proxy");
    b2_sidecar_ = sidecar("b2-sidecar", b2_, ports[1], "b2-sidecar-proxy");
    ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "b", 2); }, 30s));
    a_sidecar_ = std::make_unique<SidecarProcess>(
        consul_, logs_.path(), "a-sidecar",
        std::vector<std::string>{"--service", "a", "--service-addr", "127.0.0.1:9", "--listen",
                                 "127.0.0.1:" + std::to_string(ports[2]), "--upstream",
                                 "b:" + std::to_string(a_upstream_) + ":http", "--route-timeout",
                                 "/slow=300ms"});
    ASSERT_TRUE(wait_until(
        [&] { return a_sidecar_->metric("coromesh_sidecar_upstream_endpoints") == 2; }, 30s));
  }

  std::unique_ptr<SidecarProcess> sidecar(const std::string& log_name,
                                          const TaggedHttpServer& backend, std::uint16_t port,
                                          const std::string& id) {
    return std::make_unique<SidecarProcess>(
        consul_, logs_.path(), log_name,
        std::vector<std::string>{"--service", "b", "--service-addr", backend.address(), "--listen",
                                 "127.0.0.1:" + std::to_string(port), "--register", "--instance-id",
                                 id});
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-sidecar-test"};
  TaggedHttpServer b1_{"b1"}, b2_{"b2"};
  std::uint16_t a_upstream_ = 0;
  std::unique_ptr<SidecarProcess> b1_sidecar_, b2_sidecar_, a_sidecar_;
};

TEST_F(SidecarHttpMode, BalancesEachRequestOfOneConnectionAndPassesTraceAndDeadlineOn) {
  HttpConnection connection(a_upstream_);
  const std::string trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  std::map<std::string, int> by_instance;
  for (int i = 0; i < 200; ++i) {
    const auto [status, body] = connection.request(
        "GET", "/hello", {{"traceparent", trace}, {"x-coromesh-deadline-ms", "5000"}});
    ASSERT_EQ(status, 200) << body << a_sidecar_->log_tail();
    const auto first = body.find('|'), second = body.find('|', first + 1);
    ++by_instance[body.substr(0, first)];
    EXPECT_EQ(body.substr(first + 1, second - first - 1), trace);
    const auto deadline = std::stoi(body.substr(second + 1));
    EXPECT_GT(deadline, 0);
    EXPECT_LE(deadline, 5000) << "the remaining budget, re-encoded at the sidecar";
  }
  EXPECT_GE(by_instance["b1"], 80) << "one client connection, requests spread";
  EXPECT_GE(by_instance["b2"], 80);
  EXPECT_GE(a_sidecar_->metric("coromesh_sidecar_upstream_requests_total", {R"(code="2xx")"}), 200);
}

TEST_F(SidecarHttpMode, Retries503OnlyForIdempotentRequests) {
  HttpConnection connection(a_upstream_);
  // Every backend answers 503 on /fail: a GET is tried on each endpoint (3 attempts over
  // 2 endpoints) before the 503 comes back; a POST is sent once.
  const int before = b1_.requests() + b2_.requests();
  EXPECT_EQ(connection.request("GET", "/fail").first, 503);
  EXPECT_EQ(b1_.requests() + b2_.requests() - before, 2) << "each endpoint once";
  const int before_post = b1_.requests() + b2_.requests();
  EXPECT_EQ(connection.request("POST", "/fail").first, 503);
  EXPECT_EQ(b1_.requests() + b2_.requests() - before_post, 1) << "never sent twice";
  EXPECT_GE(a_sidecar_->metric("coromesh_sidecar_upstream_retries_total"), 1);
}

// An endpoint whose kernel accepts but whose process never answers (frozen, deadlocked):
// its TLS handshake is bounded by --handshake-timeout, as in tcp mode, and then another
// endpoint is tried, for a POST too (nothing was sent). It used to be bounded only by the
// request's whole budget: the request waited all of it there and was answered 504.
TEST_F(SidecarHttpMode, AnEndpointThatNeverHandshakesIsLeftAfterTheHandshakeTimeout) {
  const HungServer frozen;
  const json::object registration{{"Name", "b"},
                                  {"ID", "b-frozen"},
                                  {"Address", "127.0.0.1"},
                                  {"Port", frozen.port()},
                                  {"Connect", json::object{{"Native", true}}}};
  const auto answer =
      consul_.api("PUT", "/v1/agent/service/register", json::serialize(registration));
  ASSERT_EQ(answer.status, 200) << answer.body;
  const auto port = free_port();
  SidecarProcess patient(consul_, logs_.path(), "handshake-bound-sidecar",
                         {"--service", "a7", "--upstream", "b:" + std::to_string(port) + ":http",
                          "--handshake-timeout", "500ms", "--http-timeout", "8s"});
  ASSERT_TRUE(
      wait_until([&] { return patient.metric("coromesh_sidecar_upstream_endpoints") == 3; }, 30s));
  HttpConnection connection(port);
  for (int i = 0; i < 3; ++i) {  // round robin: one of them picks the frozen endpoint first
    const auto [status, body] = connection.request("POST", "/once/" + std::to_string(i));
    EXPECT_EQ(status, 200) << body << patient.log_tail();
  }
  EXPECT_GE(frozen.accepted(), 1) << "the frozen endpoint was never dialled";
  EXPECT_GE(patient.metric("coromesh_sidecar_upstream_connect_failures_total",
                           {R"(reason="handshake_timeout")"}),
            1)
      << patient.metrics();
}

// Every endpoint reads the GET and closes without an answer (/drop): each is tried once,
// and the 502 that follows is counted as the framework classifies a lost answer
// (qos/fault.hpp: "transport: no answer: connect refused, reset, closed";
// service/fault_classifier.hpp: connection_closed, outcome_unknown), so that a coromesh
// caller's `fault=transport` and its sidecar's say the same of the same cause. Was
// fault="callee_failure", which the framework keeps for an answer that came and was not
// HTTP (bad_response) or a 5xx. The endpoints are still held to it (outlier ejection), as
// the framework's discovered client holds them.
TEST_F(SidecarHttpMode, AnswersLostByEveryEndpointAreATransportFailureAsTheFrameworkSays) {
  HttpConnection connection(a_upstream_);
  const int before = b1_.requests() + b2_.requests();
  const auto [status, body] = connection.request("GET", "/drop");
  EXPECT_EQ(status, 502) << body << a_sidecar_->log_tail();
  EXPECT_EQ(b1_.requests() + b2_.requests() - before, 2) << "each endpoint once";
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="b")", R"(fault="transport")"}),
            1)
      << a_sidecar_->metrics();
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="b")", R"(fault="callee_failure")"}),
            0)
      << a_sidecar_->metrics();
  // A lost answer is the request's failure, not the connect's: it used to be counted with
  // the client's message as the reason ("connection closed ...").
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_upstream_connect_failures_total"), 0)
      << a_sidecar_->metrics();
  // A POST's lost answer is not sent again, and is the same class.
  const int before_post = b1_.requests() + b2_.requests();
  EXPECT_EQ(HttpConnection(a_upstream_).request("POST", "/drop").first, 502);
  EXPECT_EQ(b1_.requests() + b2_.requests() - before_post, 1) << "a POST is never sent twice";
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="b")", R"(fault="transport")"}),
            2)
      << a_sidecar_->metrics();
}

TEST_F(SidecarHttpMode, ARouteTimeoutAnswers504AndNeverSendsAPostTwice) {
  HttpConnection connection(a_upstream_);
  // Every backend answers /slow after 2 s; the route's budget is 300 ms.
  const int before = b1_.requests() + b2_.requests();
  const auto [status, body] = connection.request("POST", "/slow/order");
  EXPECT_EQ(status, 504) << body;
  EXPECT_NE(body.find("deadline_exceeded"), std::string::npos) << body;
  EXPECT_EQ(b1_.requests() + b2_.requests() - before, 1) << "sent once, never again";
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="b")", R"(fault="timeout")"}),
            1);
  EXPECT_EQ(connection.request("GET", "/fast").first, 200) << "other routes keep the default";
}

// A request whose caller's deadline was spent when it came (x-coromesh-deadline-ms: 0) is
// refused, as a coromesh service refuses it: 504 deadline_exceeded, nothing sent, and
// counted as the framework classifies it (qos/fault.hpp), fault="rejected". Was:
// fault="timeout", as if the callee had been too slow.
TEST_F(SidecarHttpMode, ADeadlineSpentOnArrivalIsARefusalNotATimeout) {
  HttpConnection connection(a_upstream_);
  const int before = b1_.requests() + b2_.requests();
  const auto [status, body] = connection.request("GET", "/fast", {{"x-coromesh-deadline-ms", "0"}});
  EXPECT_EQ(status, 504) << body;
  EXPECT_NE(body.find("deadline_exceeded"), std::string::npos) << body;
  EXPECT_EQ(b1_.requests() + b2_.requests() - before, 0) << "nothing sent";
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="b")", R"(fault="rejected")"}),
            1)
      << a_sidecar_->metrics();
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="b")", R"(fault="timeout")"}),
            0)
      << a_sidecar_->metrics();
  EXPECT_EQ(connection.request("GET", "/fast").first, 200) << "the connection goes on";
}

// A 429 is the callee's limit refusing (qos/fault.hpp): passed on as it came (status,
// body, Retry-After), tried once whatever the method (a refusal, not a 502/503 another
// endpoint might do better), and counted as the framework's typed client counts the same
// answer: fault="rejected", not the callee's failure nor the caller's error. Was not
// counted at all, like any 4xx passed on.
TEST_F(SidecarHttpMode, ACallees429IsPassedOnUnchangedOnceAndCountedRejected) {
  for (const char* method : {"GET", "POST"}) {
    const int before = b1_.requests() + b2_.requests();
    const auto answer = exchange(a_upstream_,
                                 std::string(method) +
                                     " /limited HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n"
                                     "Connection: close\r\n\r\n",
                                 10s, false);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 429 "))
        << method << ": " << answer << a_sidecar_->log_tail();
    EXPECT_NE(answer.find("Retry-After: 1\r\n"), std::string::npos) << answer;
    EXPECT_NE(answer.find(R"({"error":"rate_limited","reason":")"), std::string::npos) << answer;
    EXPECT_EQ(b1_.requests() + b2_.requests() - before, 1) << method << ": sent once";
  }
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="b")", R"(fault="rejected")"}),
            2)
      << a_sidecar_->metrics();
  for (const char* other : {R"(fault="callee_failure")", R"(fault="caller_error")"}) {
    EXPECT_EQ(
        a_sidecar_->metric("coromesh_sidecar_request_failures_total", {R"(listener="b")", other}),
        0)
        << other << "\n"
        << a_sidecar_->metrics();
  }
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_upstream_requests_total",
                               {R"(upstream="b")", R"(code="4xx")"}),
            2)
      << a_sidecar_->metrics();
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_upstream_retries_total"), 0)
      << a_sidecar_->metrics();
}

// Requests that cannot be passed on safely are answered 400 (501 for a transfer coding
// besides chunked) and the connection closed, and nothing reaches a backend: a
// Transfer-Encoding not ending in chunked (its body would have been forwarded as a
// request of its own), a TRACE with content (the HTTP client throws on one: the
// connection used to drop without an answer), "gzip, chunked".
TEST_F(SidecarHttpMode, RefusesRequestsItCannotPassOnSafely) {
  const int before = b1_.requests() + b2_.requests();
  const auto smuggled = exchange(a_upstream_,
                                 "POST /a HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: gzip\r\n\r\n"
                                 "GET /smuggled HTTP/1.1\r\nHost: b\r\n\r\n",
                                 10s, false);
  EXPECT_TRUE(smuggled.starts_with("HTTP/1.1 400 ")) << smuggled << a_sidecar_->log_tail();
  const auto trace = exchange(
      a_upstream_, "TRACE /t HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello", 10s, false);
  EXPECT_TRUE(trace.starts_with("HTTP/1.1 400 ")) << trace << a_sidecar_->log_tail();
  // A coding besides chunked: its body cannot go on intact (found by fuzz_sidecar_http).
  const auto gzipped =
      exchange(a_upstream_,
               "POST /a HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: gzip, chunked\r\n"
               "\r\n5\r\nhello\r\n0\r\n\r\n",
               10s, false);
  EXPECT_TRUE(gzipped.starts_with("HTTP/1.1 501 ")) << gzipped << a_sidecar_->log_tail();
  EXPECT_EQ(b1_.requests() + b2_.requests(), before) << "nothing passed on";
  // Each refusal is counted once, as the caller's error answered by the sidecar itself.
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="b")", R"(fault="caller_error")"}),
            3)
      << a_sidecar_->metrics();
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_upstream_requests_total",
                               {R"(upstream="b")", R"(code="local")"}),
            3)
      << a_sidecar_->metrics();
  EXPECT_EQ(HttpConnection(a_upstream_).request("GET", "/after").first, 200);
}

// What is for one hop only (RFC 9110 §7.6.1) stops at the sidecar: the Connection header,
// the fields it names, Keep-Alive, Proxy-Connection. A hostile Connection list
// ("x,x,...,x,close", within the header limit) is served like any other request: it used
// to be re-stated by Beast's keep_alive() past the 64 KiB a field can hold, which threw
// inside the sidecar, and the connection was held without an answer until a drain.
TEST_F(SidecarHttpMode, HopByHopHeadersStopAtTheSidecarHoweverLongTheirList) {
  HttpConnection connection(a_upstream_);
  const auto [status, names] = connection.request("GET", "/headers",
                                                  {{"Connection", "x-private"},
                                                   {"x-private", "for this hop"},
                                                   {"Keep-Alive", "timeout=5"},
                                                   {"Proxy-Connection", "keep-alive"},
                                                   {"x-public", "passed on"}});
  ASSERT_EQ(status, 200) << names;
  EXPECT_NE(names.find("x-public\n"), std::string::npos) << names;
  for (const auto* hop : {"Connection", "x-private", "Keep-Alive", "Proxy-Connection"}) {
    EXPECT_EQ(names.find(std::string(hop) + "\n"), std::string::npos)
        << hop << " reached the instance:\n"
        << names;
  }
  const auto answer = read_until_closed(a_upstream_, request_with_connection_tokens(22000), 10s);
  ASSERT_TRUE(answer.has_value())
      << "the connection is still open, without an answer, 10 s after its request\n"
      << a_sidecar_->log_tail();
  EXPECT_TRUE(answer->starts_with("HTTP/1.1 200")) << answer->substr(0, 300);
  EXPECT_EQ(a_sidecar_->log_tail(1 << 20).find("connection_failed"), std::string::npos)
      << a_sidecar_->log_tail();
}

// A request arriving before the sidecar's own leaf waits for it (and for the first
// endpoints), rather than failing every attempt on "no certificate yet" and holding that
// against the healthy endpoints: half the runs of this suite's tests used to meet it.
TEST_F(SidecarHttpMode, TheFirstRequestsWaitForTheSidecarsOwnCertificate) {
  // The endpoints often arrive before the leaf (Consul signs the leaf on first request):
  // the first request is sent as soon as they are there. Three fresh sidecars, since
  // which arrives first is a race.
  for (int i = 0; i < 3; ++i) {
    const auto port = free_port();
    SidecarProcess fresh(consul_, logs_.path(), "fresh-sidecar-" + std::to_string(i),
                         {"--service", "fresh-" + std::to_string(i), "--upstream",
                          "b:" + std::to_string(port) + ":http"});
    ASSERT_TRUE(wait_until([&] { return fresh.metric("coromesh_sidecar_upstream_endpoints") == 2; },
                           30s, 5ms));
    const auto [status, body] = HttpConnection(port).request("GET", "/first");
    EXPECT_EQ(status, 200) << body << fresh.log_tail();
    EXPECT_EQ(fresh.metric("coromesh_sidecar_upstream_connect_failures_total"), 0)
        << "an endpoint was blamed for the sidecar's own start-up" << fresh.log_tail();
  }
}

TEST_F(SidecarHttpMode, StoppingOneInstanceFailsNoRequest) {
  HttpConnection connection(a_upstream_);
  int failures = 0;
  for (int i = 0; i < 50; ++i) {
    failures += connection.request("GET", "/x").first == 200 ? 0 : 1;
  }
  b2_sidecar_->process().signal(SIGTERM);  // leaves Consul, then drains
  for (int i = 0; i < 300; ++i) {
    failures += connection.request("GET", "/x").first == 200 ? 0 : 1;
  }
  EXPECT_EQ(failures, 0) << a_sidecar_->log_tail();
  EXPECT_TRUE(wait_until(
      [&] { return a_sidecar_->metric("coromesh_sidecar_upstream_endpoints") == 1; }, 10s));
}

// An instance that leaves Consul's passing set while still running (here: maintenance
// mode) keeps the pooled upstream connections the sidecar parked to it open only until the
// sidecar's next request, not for the pool's 30 s idle timeout: the instance sees them
// closed, as it would from Envoy when its endpoint leaves the cluster.
TEST_F(SidecarHttpMode, PooledConnectionsToAnInstanceThatLeftAreClosedAtTheNextRequest) {
  HttpConnection connection(a_upstream_);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(connection.request("GET", "/x").first, 200) << a_sidecar_->log_tail();
  }
  ASSERT_GE(b2_sidecar_->metric("coromesh_sidecar_inbound_connections_active"), 1)
      << "a's sidecar pools a connection to each instance";
  const auto maintenance = http_fetch(
      "127.0.0.1", consul_.http_port(),
      "/v1/agent/service/maintenance/b2-sidecar-proxy?enable=true&reason=test", {.method = "PUT"});
  ASSERT_EQ(maintenance.status, 200) << maintenance.body << maintenance.error;
  ASSERT_TRUE(wait_until(
      [&] { return a_sidecar_->metric("coromesh_sidecar_upstream_endpoints") == 1; }, 10s));
  for (int i = 0; i < 5; ++i) {
    const auto [status, body] = connection.request("GET", "/x");
    ASSERT_EQ(status, 200) << body;
    EXPECT_EQ(body.substr(0, 2), "b1");
  }
  EXPECT_TRUE(wait_until(
      [&] { return b2_sidecar_->metric("coromesh_sidecar_inbound_connections_active") == 0; }, 5s))
      << "b2 still holds " << b2_sidecar_->metric("coromesh_sidecar_inbound_connections_active")
      << " connection(s) from a's sidecar";
}

// At the end of the grace a drain cuts off a request still in flight to the upstream
// (every backend answers /slow after 2 s), rather than closing only the client's socket
// and leaving the request to run past the drain's last wait: the drain ends with no
// connection left over, and the request counts as cancelled, nobody's failure.
// Was: a client of A's http-mode upstream that hung up while B held its request was
// noticed only once the answer came (30 s here), A's pooled connection to B's sidecar
// held all that time. Now A sees its client go, closes the connection the request was
// using (B's sidecar, in tcp mode, then closes its own to the backend), retries nothing,
// and counts the request as the caller's cancellation.
TEST_F(SidecarHttpMode, AClientThatHangsUpHasItsRequestAbandonedNotRetried) {
  const int before = b1_.requests() + b2_.requests();
  const int client = connect_blocking(a_upstream_, 5s);
  ASSERT_GE(client, 0);
  const std::string request = "GET /hold HTTP/1.1\r\nHost: b\r\n\r\n";
  ASSERT_EQ(::send(client, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  const bool held = wait_until([&] { return b1_.requests() + b2_.requests() > before; }, 10s);
  ::close(client);
  ASSERT_TRUE(held) << "the request never reached a backend" << a_sidecar_->log_tail();
  EXPECT_TRUE(wait_until([&] { return b1_.abandoned() + b2_.abandoned() == 1; }, 10s))
      << "the backend's connection stayed open after the client had gone "
      << a_sidecar_->log_tail();
  EXPECT_TRUE(wait_until(
      [&] {
        return a_sidecar_->metric("coromesh_sidecar_request_failures_total",
                                  {R"(listener="b")", R"(fault="cancelled")"}) == 1;
      },
      5s))
      << a_sidecar_->metrics();
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_upstream_requests_total", {R"(code="4xx")"}), 1)
      << a_sidecar_->metrics();
  EXPECT_EQ(a_sidecar_->metric("coromesh_sidecar_upstream_retries_total"), 0);
  EXPECT_EQ(b1_.requests() + b2_.requests() - before, 1) << "nothing is retried";
  EXPECT_EQ(a_sidecar_->log_tail(1 << 20).find("request_failed"), std::string::npos)
      << "a hang-up is not the endpoint's failure: " << a_sidecar_->log_tail();
}

TEST_F(SidecarHttpMode, ADrainCutsOffARequestInFlightToTheUpstream) {
  const auto port = free_port();
  SidecarProcess draining(consul_, logs_.path(), "draining-sidecar",
                          {"--service", "a2", "--upstream", "b:" + std::to_string(port) + ":http",
                           "--shutdown-grace", "300ms"});
  ASSERT_TRUE(
      wait_until([&] { return draining.metric("coromesh_sidecar_upstream_endpoints") == 2; }, 30s));
  ASSERT_EQ(HttpConnection(port).request("GET", "/warm").first, 200) << draining.log_tail();
  const int before = b1_.requests() + b2_.requests();
  std::pair<int, std::string> slow{-1, ""};
  std::thread client([&] { slow = HttpConnection(port).request("GET", "/slow/cut"); });
  const bool reached = wait_until([&] { return b1_.requests() + b2_.requests() > before; }, 10s);
  draining.process().signal(SIGTERM);
  const auto exit_code = draining.process().wait_exit(10s);
  client.join();
  ASSERT_TRUE(reached) << "the request never reached a backend" << draining.log_tail();
  EXPECT_EQ(exit_code, 0) << draining.log_tail();
  EXPECT_EQ(slow.first, 0) << "cut off at the grace, before the backend's answer: " << slow.second;
  const auto log = draining.log_tail(64 * 1024);
  EXPECT_EQ(log.find("sidecar.drain.unfinished"), std::string::npos) << log;
  EXPECT_EQ(log.find("sidecar.upstream.request_failed"), std::string::npos)
      << "a cut-off is not the endpoint's failure: " << log;
}

// A request's budget bounds its wait for what only Consul gives (the first endpoints, the
// leaf): with an agent that never answers, a request with 300 ms left is answered once
// they are spent, not held for the whole start-up patience (--handshake-timeout, here
// 60 s; it used to be answered 503 no_certificate_yet after those 60 s). Never having
// left because Consul had not answered about the upstream yet, it is this sidecar's own
// plumbing not being ready, as the framework classifies it (discovery_unavailable: fault
// "rejected", 503): answered 503 no_endpoint and counted fault="rejected". It was
// answered 504 deadline_exceeded and counted fault="timeout", the callee's slowness, for
// a callee that was never asked.
TEST(SidecarHttpModeStartUp, ARequestNoEndpointWasFoundForInTimeIsARefusalNotATimeout) {
  const HungServer silent_consul;
  TempDir logs{"coromesh-sidecar-test"};
  const auto ports = free_ports(2);
  const std::uint16_t admin = ports[0], upstream = ports[1];
  ChildProcess sidecar({(binary_dir() / "coromesh-sidecar").string(), "--consul",
                        "127.0.0.1:" + std::to_string(silent_consul.port()), "--port",
                        std::to_string(admin), "--threads", "2", "--service", "a7", "--upstream",
                        "b:" + std::to_string(upstream) + ":http", "--handshake-timeout", "60s"},
                       logs.path() / "no-endpoint-in-time-sidecar.log");
  ASSERT_TRUE(wait_until(
      [&] {
        const int fd = connect_blocking(upstream, 1s);
        if (fd >= 0) {
          ::close(fd);
        }
        return fd >= 0 || !sidecar.running();
      },
      15s))
      << sidecar.log_tail();
  ASSERT_TRUE(sidecar.running()) << sidecar.log_tail();
  const auto asked = std::chrono::steady_clock::now();
  const auto [status, body] =
      HttpConnection(upstream).request("GET", "/x", {{"x-coromesh-deadline-ms", "300"}});
  const auto waited = std::chrono::steady_clock::now() - asked;
  EXPECT_LT(waited, 20s) << "held past its 300 ms budget, for the start-up patience: " << body;
  EXPECT_EQ(status, 503) << body << sidecar.log_tail();
  EXPECT_NE(body.find("no_endpoint"), std::string::npos) << body;
  const auto metrics = http_fetch("127.0.0.1", admin, "/metrics");
  ASSERT_EQ(metrics.status, 200) << metrics.body;
  EXPECT_EQ(metric_sum(metrics.body, "coromesh_sidecar_request_failures_total",
                       {R"(listener="b")", R"(fault="rejected")"}),
            1)
      << metrics.body;
  EXPECT_EQ(metric_sum(metrics.body, "coromesh_sidecar_request_failures_total",
                       {R"(listener="b")", R"(fault="timeout")"}),
            0)
      << metrics.body;
}

// A drain that begins before Consul's first answer about an upstream (the agent is
// silent) stops that upstream's watch, and the request still waiting for the first
// endpoints is answered then: 503 no_endpoint, the last answer of its connection. It used
// to get none: the watch's end came out of forward() as an exception, its connection
// waited for the grace's cut-off and was closed without a word (and a removed upstream's,
// which no cut-off follows, stayed open).
TEST(SidecarHttpModeStartUp, ADrainBeforeConsulsFirstAnswerAnswersTheRequestWaitingForIt) {
  const HungServer silent_consul;
  TempDir logs{"coromesh-sidecar-test"};
  const auto ports = free_ports(2);
  const std::uint16_t admin = ports[0], upstream = ports[1];
  ChildProcess sidecar(
      {(binary_dir() / "coromesh-sidecar").string(), "--consul",
       "127.0.0.1:" + std::to_string(silent_consul.port()), "--port", std::to_string(admin),
       "--threads", "2", "--service", "a6", "--upstream", "b:" + std::to_string(upstream) + ":http",
       "--handshake-timeout", "60s", "--http-timeout", "60s", "--shutdown-grace", "4s"},
      logs.path() / "drained-before-consul-sidecar.log");
  ASSERT_TRUE(wait_until(
      [&] {
        const int fd = connect_blocking(upstream, 1s);
        if (fd >= 0) {
          ::close(fd);
        }
        return fd >= 0 || !sidecar.running();
      },
      15s))
      << sidecar.log_tail();
  ASSERT_TRUE(sidecar.running()) << sidecar.log_tail();
  std::pair<int, std::string> answer{-1, ""};
  std::thread client([&] { answer = HttpConnection(upstream).request("GET", "/x"); });
  // The request is read at once and waits for the endpoints (60 s of patience); this
  // pause only lets it get there before the drain begins.
  std::this_thread::sleep_for(500ms);
  sidecar.signal(SIGTERM);
  const auto exit_code = sidecar.wait_exit(30s);
  client.join();
  EXPECT_EQ(exit_code, 0) << sidecar.log_tail();
  EXPECT_EQ(answer.first, 503) << answer.second << sidecar.log_tail();
  EXPECT_NE(answer.second.find("no_endpoint"), std::string::npos) << answer.second;
}

// A service Consul knows no passing instance of: 503 (as Envoy's "no healthy upstream"),
// counted as a transport failure and a connect failure "no_endpoint". It used to be 502,
// the answer for endpoints that were tried and failed.
TEST_F(SidecarHttpMode, AnUpstreamWithNoInstanceAnswers503) {
  const auto port = free_port();
  SidecarProcess lonely(
      consul_, logs_.path(), "lonely-sidecar",
      {"--service", "a5", "--upstream", "nobody:" + std::to_string(port) + ":http"});
  ASSERT_TRUE(wait_until(
      [&] {
        const int fd = connect_blocking(port, 1s);
        if (fd >= 0) {
          ::close(fd);
        }
        return fd >= 0;
      },
      30s))
      << lonely.log_tail();
  const auto [status, body] = HttpConnection(port).request("GET", "/x");
  EXPECT_EQ(status, 503) << body << lonely.log_tail();
  EXPECT_NE(body.find("no_endpoint"), std::string::npos) << body;
  EXPECT_EQ(lonely.metric("coromesh_sidecar_upstream_connect_failures_total",
                          {R"(upstream="nobody")", R"(reason="no_endpoint")"}),
            1)
      << lonely.metrics();
  EXPECT_EQ(lonely.metric("coromesh_sidecar_request_failures_total",
                          {R"(listener="nobody")", R"(fault="transport")"}),
            1)
      << lonely.metrics();
}

TEST_F(SidecarHttpMode, ReachesConsulsOwnInboundProxy) {
  TaggedHttpServer c("c1");
  const auto ports = free_ports(3);
  auto c_proxy = consul_connect_proxy(consul_, logs_.path(), "c-consul-proxy",
                                      {"-service", "c", "-service-addr", c.address(), "-listen",
                                       "127.0.0.1:" + std::to_string(ports[0]), "-register"});
  SidecarProcess d_sidecar(
      consul_, logs_.path(), "d-sidecar",
      // The upstream-only form, as `consul connect proxy -service d -upstream c:PORT`.
      {"--service", "d", "--upstream", "c:" + std::to_string(ports[2]) + ":http"});
  EXPECT_TRUE(wait_until(
      [&] { return HttpConnection(ports[2]).request("GET", "/").second.starts_with("c1|"); }, 30s))
      << d_sidecar.log_tail() << c_proxy->log_tail();
  HttpConnection connection(ports[2]);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(connection.request("GET", "/again").first, 200);
  }
}

}  // namespace
}  // namespace coromesh::testing
