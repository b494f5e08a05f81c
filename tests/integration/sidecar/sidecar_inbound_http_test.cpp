// The public listener in http mode (--protocol http) between real sidecars and a real
// Consul: A's upstream listener (tcp, so whatever A's client sends reaches B's sidecar
// untouched) -> B's public mTLS listener, which reads HTTP/1.1 and sends each request to
// B over pooled connections, naming the verified caller in x-coromesh-peer.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include "mesh_fixture.hpp"

namespace coromesh::testing {
namespace {

// The fields of TaggedHttpServer's body "<tag>|<traceparent>|<deadline>|<peer>".
std::vector<std::string> fields(const std::string& body) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t bar = body.find('|'); bar != std::string::npos; bar = body.find('|', start)) {
    out.push_back(body.substr(start, bar - start));
    start = bar + 1;
  }
  out.push_back(body.substr(start));
  return out;
}

class SidecarInboundHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto ports = free_ports(2);
    b_public_ = ports[0];
    a_upstream_ = ports[1];
    b_sidecar_ = std::make_unique<SidecarProcess>(
        consul_, logs_.path(), "b-sidecar",
        std::vector<std::string>{"--service", "b", "--service-addr", b_.address(), "--listen",
                                 "127.0.0.1:" + std::to_string(ports[0]), "--register",
                                 "--protocol", "http", "--route-timeout", "/slow=300ms"});
    a_sidecar_ = std::make_unique<SidecarProcess>(
        consul_, logs_.path(), "a-sidecar",
        std::vector<std::string>{"--service", "a", "--upstream",
                                 "b:" + std::to_string(a_upstream_)});
    ASSERT_TRUE(wait_until(
        [&] { return HttpConnection(a_upstream_).request("GET", "/ready").first == 200; }, 30s))
        << a_sidecar_->log_tail() << b_sidecar_->log_tail();
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-sidecar-test"};
  TaggedHttpServer b_{"b1"};
  std::uint16_t b_public_ = 0, a_upstream_ = 0;
  std::unique_ptr<SidecarProcess> b_sidecar_, a_sidecar_;
};

TEST_F(SidecarInboundHttp, NamesTheVerifiedCallerAndDropsAForgedName) {
  HttpConnection connection(a_upstream_);
  for (int i = 0; i < 20; ++i) {
    const auto [status, body] = connection.request(
        "GET", "/hello",
        {{"x-coromesh-peer", "spiffe://forged.consul/ns/default/dc/dc1/svc/admin"}});
    ASSERT_EQ(status, 200) << body << b_sidecar_->log_tail();
    const auto peer = fields(body).at(3);
    EXPECT_TRUE(peer.starts_with("spiffe://") && peer.ends_with("/svc/a")) << peer;
    EXPECT_EQ(peer.find("forged"), std::string::npos) << peer;
  }
  EXPECT_GE(b_sidecar_->metric("coromesh_sidecar_inbound_requests_total", {R"(code="2xx")"}), 20);
  const auto registration = consul_.api("GET", "/v1/agent/service/b-sidecar-proxy").body;
  EXPECT_NE(registration.find(R"("protocol": "http")"), std::string::npos)
      << "the registration says what the listener speaks: " << registration;
  EXPECT_GE(b_sidecar_->metric("coromesh_sidecar_request_duration_seconds_count",
                               {R"(listener="inbound")"}),
            20);
}

// A hostile Connection list ("x,x,...,x,close", within the header limit) from a peer is
// served like any other request, its list not passed on: it used to be re-stated by
// Beast's keep_alive() past the 64 KiB a field can hold when the request was made
// keep-alive for the local service, which threw inside B's sidecar, and the connection
// was held without an answer until a drain. (A's upstream is tcp: the request reaches B's
// sidecar as sent.)
TEST_F(SidecarInboundHttp, AHostileConnectionListIsServedAndNotPassedOn) {
  const auto answer = read_until_closed(a_upstream_, request_with_connection_tokens(22000), 10s);
  ASSERT_TRUE(answer.has_value())
      << "the connection is still open, without an answer, 10 s after its request\n"
      << b_sidecar_->log_tail();
  EXPECT_TRUE(answer->starts_with("HTTP/1.1 200")) << answer->substr(0, 300);
  EXPECT_EQ(b_sidecar_->log_tail(1 << 20).find("connection_failed"), std::string::npos)
      << b_sidecar_->log_tail();
}

// Was: B's sidecar, forwarding a request the local service holds, watched nothing of its
// downstream connection: a caller that hung up was noticed only once the answer came (30 s
// here), its request held at the local service all that time, over a pooled connection.
// Now B's sidecar sees the caller go (over mTLS: A's tcp upstream passes the client's
// close on as close_notify, then FIN), closes its connection to the local service (not
// pooled) and counts the request as the caller's cancellation.
TEST_F(SidecarInboundHttp, ACallerThatHangsUpHasItsRequestAtTheLocalServiceAbandoned) {
  const int before = b_.requests();
  const int client = connect_blocking(a_upstream_, 5s);
  ASSERT_GE(client, 0);
  const std::string request = "GET /hold HTTP/1.1\r\nHost: b\r\n\r\n";
  ASSERT_EQ(::send(client, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  const bool held = wait_until([&] { return b_.requests() > before; }, 10s);
  ::close(client);
  ASSERT_TRUE(held) << "the request never reached the local service" << b_sidecar_->log_tail();
  EXPECT_TRUE(wait_until([&] { return b_.abandoned() == 1; }, 10s))
      << "the local service's connection stayed open after the caller had gone "
      << b_sidecar_->log_tail();
  EXPECT_TRUE(wait_until(
      [&] {
        return b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                                  {R"(listener="inbound")", R"(fault="cancelled")"}) == 1;
      },
      5s))
      << b_sidecar_->metrics();
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_inbound_requests_total", {R"(code="4xx")"}), 1)
      << b_sidecar_->metrics();
  EXPECT_EQ(b_.requests() - before, 1) << "nothing is retried";
  EXPECT_EQ(b_sidecar_->log_tail(1 << 20).find("connection_failed"), std::string::npos)
      << b_sidecar_->log_tail();
}

TEST_F(SidecarInboundHttp, PoolsTheConnectionsToTheLocalService) {
  const int before = b_.connections();
  for (int i = 0; i < 12; ++i) {
    ASSERT_EQ(HttpConnection(a_upstream_).request("GET", "/one").first, 200);
  }
  // Twelve callers' connections, each TLS-terminated at B's sidecar; its two io threads
  // keep at most one idle connection each to B.
  EXPECT_LE(b_.connections() - before, 2);
  EXPECT_GE(b_sidecar_->metric("coromesh_sidecar_inbound_connections_total"), 12);
}

TEST_F(SidecarInboundHttp, ARouteTimeoutAnswers504AndCountsATimeout) {
  HttpConnection connection(a_upstream_);
  const auto [status, body] = connection.request("GET", "/slow/report");
  EXPECT_EQ(status, 504) << body;
  EXPECT_NE(body.find("deadline_exceeded"), std::string::npos) << body;
  EXPECT_EQ(connection.request("GET", "/fast").first, 200) << "the connection goes on";
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="inbound")", R"(fault="timeout")"}),
            1);
  EXPECT_GE(b_sidecar_->metric("coromesh_sidecar_inbound_requests_total", {R"(code="local")"}), 1);
}

// The local service reads the request and closes without an answer (/drop): 502
// local_failed, counted as the framework classifies a lost answer (transport), not as the
// local service's failure (callee_failure: a 5xx, or an answer that is not HTTP).
TEST_F(SidecarInboundHttp, AnAnswerTheLocalServiceLostIsATransportFailure) {
  const auto [status, body] = HttpConnection(a_upstream_).request("GET", "/drop");
  EXPECT_EQ(status, 502) << body << b_sidecar_->log_tail();
  EXPECT_NE(body.find("local_failed"), std::string::npos) << body;
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="inbound")", R"(fault="transport")"}),
            1)
      << b_sidecar_->metrics();
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="inbound")", R"(fault="callee_failure")"}),
            0)
      << b_sidecar_->metrics();
}

// The local service's 429 (its rate limit refused) goes back to the caller as it came and
// is counted as the framework counts the same answer (qos/fault.hpp): fault="rejected".
// Was not counted at all, like any 4xx passed on.
TEST_F(SidecarInboundHttp, TheLocalServices429IsPassedOnAndCountedRejected) {
  const int before = b_.requests();
  const auto [status, body] = HttpConnection(a_upstream_).request("GET", "/limited");
  EXPECT_EQ(status, 429) << body << b_sidecar_->log_tail();
  EXPECT_EQ(body, R"({"error":"rate_limited","reason":"b1 is over its limit"})");
  EXPECT_EQ(b_.requests() - before, 1);
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="inbound")", R"(fault="rejected")"}),
            1)
      << b_sidecar_->metrics();
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="inbound")", R"(fault="caller_error")"}),
            0)
      << b_sidecar_->metrics();
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_inbound_requests_total", {R"(code="4xx")"}), 1)
      << b_sidecar_->metrics();
}

// A caller's deadline spent when its request came (x-coromesh-deadline-ms: 0) is refused
// before the local service is called, as the framework refuses it (and counts it,
// qos/fault.hpp): 504 deadline_exceeded, fault="rejected". Was: sent on, answered 504 by
// the local client's spent deadline and counted fault="timeout", the local service's
// slowness.
TEST_F(SidecarInboundHttp, ADeadlineSpentOnArrivalIsARefusalNotATimeout) {
  const int before = b_.requests();
  HttpConnection connection(a_upstream_);
  const auto [status, body] = connection.request("GET", "/fast", {{"x-coromesh-deadline-ms", "0"}});
  EXPECT_EQ(status, 504) << body;
  EXPECT_NE(body.find("deadline_exceeded"), std::string::npos) << body;
  EXPECT_EQ(b_.requests() - before, 0) << "nothing sent to the local service";
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="inbound")", R"(fault="rejected")"}),
            1)
      << b_sidecar_->metrics();
  EXPECT_EQ(b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                               {R"(listener="inbound")", R"(fault="timeout")"}),
            0)
      << b_sidecar_->metrics();
  EXPECT_EQ(connection.request("GET", "/fast").first, 200) << "the connection goes on";
}

// A drain closes the kept-alive connections that wait for their next request at once, as
// the framework's own server does, instead of holding them open until the grace runs out
// and then cutting them off (the caller's next request on such a connection, sent in the
// meantime, would be cut off in flight); one of them is here, and the drain cuts off none.
TEST_F(SidecarInboundHttp, ADrainClosesAKeptAliveConnectionBetweenRequestsAtOnce) {
  HttpConnection connection(a_upstream_);
  ASSERT_EQ(connection.request("GET", "/one").first, 200) << b_sidecar_->log_tail();
  b_sidecar_->process().signal(SIGTERM);
  EXPECT_EQ(b_sidecar_->process().wait_exit(10s), 0) << b_sidecar_->log_tail();
  const auto log = b_sidecar_->log_tail(64 * 1024);
  EXPECT_NE(log.find("event=service.shutdown.done cut_off=0 "), std::string::npos) << log;
  EXPECT_EQ(connection.request("GET", "/two").first, 0) << "closed by the drain";
}

// What the public listener cannot pass on safely, a caller with a valid Connect leaf
// sending it straight to B's sidecar over mTLS (not through A's sidecar, which could
// shape it): a Transfer-Encoding not ending in chunked (its body would be taken for a
// request of its own) is answered 400, a header over 64 KiB 431, by the sidecar itself;
// nothing reaches the service, and each refusal counts once as the caller's error,
// answered locally.
TEST_F(SidecarInboundHttp, RefusesRequestsItCannotPassOnAndCountsEachOnce) {
  const auto leaf = boost::json::parse(consul_.api("GET", "/v1/agent/connect/ca/leaf/a").body);
  const auto context = client_context(std::string(leaf.at("CertPEM").as_string()),
                                      std::string(leaf.at("PrivateKeyPEM").as_string()));
  const auto caller_errors = [&] {
    return b_sidecar_->metric("coromesh_sidecar_request_failures_total",
                              {R"(listener="inbound")", R"(fault="caller_error")"});
  };
  const auto local_answers = [&] {
    return b_sidecar_->metric("coromesh_sidecar_inbound_requests_total", {R"(code="local")"});
  };
  const int before = b_.requests();
  ASSERT_EQ(caller_errors(), 0) << b_sidecar_->metrics();
  ASSERT_EQ(local_answers(), 0) << b_sidecar_->metrics();

  const auto malformed =
      tls_exchange(b_public_, context.get(),
                   "POST /a HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: gzip\r\n\r\n"
                   "GET /smuggled HTTP/1.1\r\nHost: b\r\n\r\n",
                   10s);
  EXPECT_TRUE(malformed.starts_with("HTTP/1.1 400 ")) << malformed << b_sidecar_->log_tail();
  EXPECT_EQ(caller_errors(), 1) << b_sidecar_->metrics();
  EXPECT_EQ(local_answers(), 1) << b_sidecar_->metrics();

  // Just over the limit, ending the request: the sidecar has read all of it when it
  // answers, so its close cannot reset the connection before the answer is read.
  std::string oversized = "GET /big HTTP/1.1\r\nHost: b\r\n";
  while (oversized.size() < 64 * 1024 + 64) {
    oversized += "a:b\r\n";
  }
  oversized += "\r\n";
  const auto too_large = tls_exchange(b_public_, context.get(), oversized, 10s);
  EXPECT_TRUE(too_large.starts_with("HTTP/1.1 431 "))
      << too_large.substr(0, 200) << b_sidecar_->log_tail();
  EXPECT_EQ(caller_errors(), 2) << b_sidecar_->metrics();
  EXPECT_EQ(local_answers(), 2) << b_sidecar_->metrics();

  EXPECT_EQ(b_.requests(), before) << "nothing passed on";
  EXPECT_EQ(HttpConnection(a_upstream_).request("GET", "/after").first, 200);
}

}  // namespace
}  // namespace coromesh::testing
