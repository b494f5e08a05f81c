// "Nothing reached the callee" versus "the answer was lost", end to end: a coromesh caller
// (in process) -> its sidecar's http-mode upstream listener -> the callee's sidecars (http
// mode inbound) -> the callee. An instance whose local service has just crashed (Consul's
// check has not seen it yet) answers 503 local_unavailable from its sidecar with
// x-coromesh-not-delivered: nothing ran, so a POST is sent to another instance, by the
// caller's sidecar or, when that one makes a single attempt, by the caller's own retry
// (Envoy's connect-failure retry, for any method). A POST whose answer was lost after it
// was sent, or that the callee's own code answered with a forged header, is not sent
// again.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <coromesh/http/error.hpp>
#include <coromesh/runtime/io_pool.hpp>
#include <coromesh/service/service.hpp>
#include <memory>
#include <string>
#include <utility>

#include "mesh_fixture.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

struct Entry {
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(Entry, (), (amount))

struct Recorded {
  std::int64_t entries = 0;
};
BOOST_DESCRIBE_STRUCT(Recorded, (), (entries))

// A POST without a retry: only the sidecar may send it elsewhere.
COROMESH_OPERATION(record_once, POST, "/api/v1/record", Entry, Recorded,
                   CLIENT_QOS(qos::timeout{.per_attempt = 5s}));

// The same POST with a retry declared, without qos::retry{.non_idempotent = true}: sent
// again only when it never reached the callee.
#define LEDGER_RETRY                          \
  CLIENT_QOS(qos::timeout{.per_attempt = 5s}, \
             qos::retry{.max_attempts = 3, .base_backoff = 1ms, .max_backoff = 2ms})
COROMESH_OPERATION(record, POST, "/api/v1/record", Entry, Recorded, LEDGER_RETRY);
// On TaggedHttpServer's paths: read, then closed without an answer; answered 503 with a
// forged x-coromesh-not-delivered by the service's own code.
COROMESH_OPERATION(record_dropped, POST, "/drop/record", Entry, Recorded, LEDGER_RETRY);
COROMESH_OPERATION(record_forged, POST, "/forged/record", Entry, Recorded, LEDGER_RETRY);
#undef LEDGER_RETRY

config::ServiceConfig in_process(std::string name) {
  config::ServiceConfig config;
  config.name = std::move(name);
  config.consul_register = false;
  config.io_threads = 1;
  config.log_level = log::Level::error;
  config.shutdown_grace = 1s;
  return config;
}

class NotDelivered : public ::testing::Test {
 protected:
  void SetUp() override {
    ledger_ = std::make_unique<Service>(in_process("ledger"));
    ledger_->serve(record, [this](Entry) -> boost::asio::awaitable<Recorded> {
      co_return Recorded{++received_};
    });
    ledger_->start();
    const auto ports = free_ports(5);
    down_public_ = ports[0];
    ledger_upstream_ = ports[3];
    tagged_upstream_ = ports[4];
    // The instance whose local service has crashed: its sidecar is up, nothing listens
    // behind it. Registered by hand, without checks, as an instance Consul still lists
    // as passing because its check has not run since the crash.
    down_sidecar_ = inbound("ledger-down", "ledger", "127.0.0.1:" + std::to_string(free_port()),
                            down_public_, false);
    const json::object down{{"Name", "ledger"},
                            {"ID", "ledger-down"},
                            {"Address", "127.0.0.1"},
                            {"Port", down_public_},
                            {"Connect", json::object{{"Native", true}}}};
    const auto answer = consul_.api("PUT", "/v1/agent/service/register", json::serialize(down));
    ASSERT_EQ(answer.status, 200) << answer.body;
    up_sidecar_ = inbound("ledger-up", "ledger", "127.0.0.1:" + std::to_string(ledger_->port()),
                          ports[1], true);
    tagged_sidecar_ = inbound("tagged", "tagged", tagged_.address(), ports[2], true);
    ASSERT_TRUE(wait_until(
        [&] {
          return connect_endpoints_passing(consul_, "ledger", 2) &&
                 connect_endpoints_passing(consul_, "tagged", 1);
        },
        30s));
    caller_sidecar_ = outbound("caller-sidecar", {});
    caller_ = std::make_unique<Service>(in_process("caller"));
    const http::Destination ledger{.host = "127.0.0.1", .port = ledger_upstream_};
    const http::Destination tagged{.host = "127.0.0.1", .port = tagged_upstream_};
    caller_->client(record_once, ledger);
    caller_->client(record, ledger);
    caller_->client(record_dropped, tagged);
    caller_->client(record_forged, tagged);
    caller_->start();
  }

  void TearDown() override {
    for (auto* service : {caller_.get(), ledger_.get()}) {
      if (service != nullptr) {
        service->request_shutdown();
        service->wait();
      }
    }
  }

  // An http-mode inbound sidecar for `service` in front of `local`, on `public_port`.
  std::unique_ptr<SidecarProcess> inbound(const std::string& name, const std::string& service,
                                          const std::string& local, std::uint16_t public_port,
                                          bool registered) {
    std::vector<std::string> args{"--service",      service,
                                  "--service-addr", local,
                                  "--listen",       "127.0.0.1:" + std::to_string(public_port),
                                  "--protocol",     "http"};
    if (registered) {
      args.insert(args.end(), {"--register", "--instance-id", name + "-sidecar-proxy"});
    }
    return std::make_unique<SidecarProcess>(consul_, logs_.path(), name + "-sidecar", args);
  }

  // The caller's sidecar: both upstreams in http mode, plus `extra` flags.
  std::unique_ptr<SidecarProcess> outbound(const std::string& name,
                                           std::vector<std::string> extra) {
    std::vector<std::string> args{
        "--service",  "caller",
        "--upstream", "ledger:" + std::to_string(ledger_upstream_) + ":http",
        "--upstream", "tagged:" + std::to_string(tagged_upstream_) + ":http"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto sidecar = std::make_unique<SidecarProcess>(consul_, logs_.path(), name, args);
    EXPECT_TRUE(wait_until(
        [&] {
          return sidecar->metric("coromesh_sidecar_upstream_endpoints", {R"(upstream="ledger")"}) ==
                     2 &&
                 sidecar->metric("coromesh_sidecar_upstream_endpoints", {R"(upstream="tagged")"}) ==
                     1;
        },
        30s))
        << sidecar->metrics();
    return sidecar;
  }

  // Makes one call of `op`'s client (to `upstream`, a port of the caller's sidecar) on the
  // caller's io thread; the failure's message, or
  // "" when it succeeded.
  template <const auto& Op>
  std::string call(std::uint16_t upstream) {
    auto& client = caller_->client(Op, http::Destination{.host = "127.0.0.1", .port = upstream});
    auto future = boost::asio::co_spawn(
        caller_->pool().executor(0),
        [&client]() -> boost::asio::awaitable<Recorded> { co_return co_await client.execute({1}); },
        boost::asio::use_future);
    try {
      future.get();
      return "";
    } catch (const std::exception& e) {
      return e.what();
    }
  }

  double caller_calls(const std::string& operation, const std::string& result) const {
    const auto metrics = http_fetch("127.0.0.1", caller_->port(), "/metrics").body;
    return metric_sum(
        metrics, "coromesh_qos_calls_total",
        {"operation=\"" + operation + "\"", "result=\"" + result + "\"", R"(side="client")"});
  }

  double local_unavailable_answers() const {
    return down_sidecar_->metric("coromesh_sidecar_request_failures_total",
                                 {R"(listener="inbound")", R"(fault="transport")"});
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-not-delivered"};
  TaggedHttpServer tagged_{"tagged"};
  std::atomic<std::int64_t> received_{0};
  std::unique_ptr<Service> ledger_;
  std::uint16_t down_public_ = 0, ledger_upstream_ = 0, tagged_upstream_ = 0;
  std::unique_ptr<SidecarProcess> down_sidecar_, up_sidecar_, tagged_sidecar_, caller_sidecar_;
  std::unique_ptr<Service> caller_;
};

constexpr int kCalls = 6;  // round robin over 2 instances: every other one picks the crashed

// The caller's sidecar sends a POST whose first instance's service refused the
// connection to the live one: no call fails, each is recorded once. It used to answer the
// sidecar's 503 local_unavailable (a POST is never retried on a 503): half the calls
// failed.
TEST_F(NotDelivered, TheCallersSidecarSendsAPostNothingReceivedToALiveInstance) {
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(call<record_once>(ledger_upstream_), "") << caller_sidecar_->log_tail();
  }
  EXPECT_EQ(received_.load(), kCalls) << "a POST was recorded twice, or lost";
  EXPECT_GE(local_unavailable_answers(), 1) << "the crashed instance was never picked";
  EXPECT_GE(
      caller_sidecar_->metric("coromesh_sidecar_upstream_retries_total", {R"(upstream="ledger")"}),
      1);
  EXPECT_EQ(caller_calls("record_once", "ok"), kCalls);
  EXPECT_EQ(caller_calls("record_once", "error"), 0);
}

// The caller's sidecar makes one attempt per request: it passes the 503 local_unavailable
// on with its x-coromesh-not-delivered, and the caller's own retry sends the POST again
// (to the live instance: round robin). Each call is counted once ok, after one error per
// crashed pick; each entry recorded once.
TEST_F(NotDelivered, TheCallersRetrySendsAPostNothingReceivedAgain) {
  caller_sidecar_.reset();  // its upstream ports go to the new one (no call made yet)
  caller_sidecar_ = outbound("one-attempt-sidecar", {"--upstream-attempts", "1"});
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(call<record>(ledger_upstream_), "") << caller_sidecar_->log_tail();
  }
  EXPECT_EQ(received_.load(), kCalls) << "a POST was recorded twice, or lost";
  const double crashed_picks = local_unavailable_answers();
  EXPECT_GE(crashed_picks, 1) << "the crashed instance was never picked";
  EXPECT_EQ(caller_sidecar_->metric("coromesh_sidecar_upstream_retries_total"), 0)
      << "one attempt per request: the caller retried, not its sidecar";
  EXPECT_EQ(caller_calls("record", "ok"), kCalls);
  EXPECT_EQ(caller_calls("record", "error"), crashed_picks) << "one retry per crashed pick";
}

// The callee read the POST and closed the connection without an answer: it may have run.
// Its sidecar answers 502 local_failed (no x-coromesh-not-delivered), and neither the
// caller's sidecar nor the caller's retry sends it again.
TEST_F(NotDelivered, APostWhoseAnswerWasLostIsNotSentAgain) {
  const int before = tagged_.requests();
  const auto failure = call<record_dropped>(tagged_upstream_);
  EXPECT_NE(failure.find("502"), std::string::npos) << failure;
  EXPECT_NE(failure.find("local_failed"), std::string::npos) << failure;
  EXPECT_EQ(tagged_.requests() - before, 1) << "a POST that reached the callee was sent again";
  EXPECT_EQ(caller_calls("record_dropped", "error"), 1);
}

// The callee's own code answers 503 with x-coromesh-not-delivered, as if it were its
// sidecar: its sidecar removes the header, and the POST, which did reach the callee, is not
// sent again by anyone.
TEST_F(NotDelivered, AHeaderForgedByTheCalleesCodeCausesNoRetry) {
  const int before = tagged_.requests();
  const auto failure = call<record_forged>(tagged_upstream_);
  EXPECT_NE(failure.find("503"), std::string::npos) << failure;
  EXPECT_EQ(failure.find("never reached"), std::string::npos) << failure;
  EXPECT_EQ(tagged_.requests() - before, 1) << "a forged header had a POST sent again";
  EXPECT_EQ(caller_calls("record_forged", "error"), 1);
  // What the caller's sidecar passed on: the callee's answer, without the header.
  const auto raw = read_until_closed(
      tagged_upstream_,
      "POST /forged/raw HTTP/1.1\r\nHost: tagged\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
      10s);
  ASSERT_TRUE(raw.has_value());
  EXPECT_NE(raw->find(" 503 "), std::string::npos) << *raw;
  EXPECT_NE(raw->find("forged by tagged"), std::string::npos) << *raw;
  EXPECT_EQ(raw->find("x-coromesh-not-delivered"), std::string::npos) << *raw;
  EXPECT_EQ(tagged_.requests() - before, 2) << "the raw POST was sent once";
}

// Reached directly (Connect-native, or --upstreams to its port), a coromesh service
// cannot claim either that nothing reached it: its server removes the header from what
// any handler, a raw one included, answers. A caller would otherwise send a POST that ran
// here to another instance.
TEST(NotDeliveredHeader, IsRemovedFromWhatAHandlerAnswers) {
  Service service(in_process("claimer"));
  service.route(http::Verb::post, "/api/v1/claim", "claim",
                [](http::RequestContext&) -> boost::asio::awaitable<http::Response> {
                  auto response = http::make_error_response(http::Status::service_unavailable,
                                                            "local_unavailable", "claimed");
                  response.set(http::kNotDeliveredHeader, "1");
                  co_return response;
                });
  service.start();
  const auto answer = http_fetch("127.0.0.1", service.port(), "/api/v1/claim", {.method = "POST"});
  service.request_shutdown();
  service.wait();
  EXPECT_EQ(answer.status, 503) << answer.error;
  EXPECT_EQ(answer.headers.count("x-coromesh-not-delivered"), 0U);
}

}  // namespace
}  // namespace coromesh::testing
