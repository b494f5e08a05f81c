// A callee's 429 is the callee's refusal, not the caller's error (qos/fault.hpp, note 3):
// `quota` serves two operations behind a rate limit of one call an hour, so its rate
// limiter answers the second call 429 rate_limited before its handler runs; `shop` calls
// them through its typed clients. At the caller the refusal is `rejected`, as its own
// policies' refusals are: its declared fallback answers it, its breaker and retry leave
// it alone (a refusal is never retried; retry_on cannot even list 429), and its metrics
// count it result="rejected". It was `caller_error` like every 4xx: the fallback never answered
// (shop answered 503), and shop's client counted caller_error.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <coromesh/http/error.hpp>
#include <coromesh/service/service.hpp>
#include <memory>
#include <string>
#include <type_traits>

#include "http_fetch.hpp"
#include "in_process_service.hpp"

namespace coromesh::testing {
namespace {

using namespace std::chrono_literals;

struct Order {
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(Order, (), (amount))

struct Receipt {
  std::int64_t amount = 0;  // the fallback's: minus the status it answered for
};
BOOST_DESCRIBE_STRUCT(Receipt, (), (amount))

Receipt quota_refused(const qos::Fault& fault) {
  return Receipt{.amount = -static_cast<std::int64_t>(fault.status)};
}

// Retries declared: a refusal is never retried all the same.
COROMESH_OPERATION(
    quote, GET, "/api/v1/quote", Order, Receipt, QOS(qos::rate_limit{.permits = 1, .period = 1h}),
    CLIENT_QOS(qos::timeout{.per_attempt = 5s},
               qos::retry{.max_attempts = 3,
                          .base_backoff = 1ms,
                          .max_backoff = 4ms,
                          .retry_on = {502, 503, 504}},
               qos::circuit_breaker{
                   .failure_rate = 0.5, .window = 2, .minimum_calls = 1, .open_for = 60s},
               qos::fallback{&quota_refused}));
COROMESH_OPERATION(debit, POST, "/api/v1/debit", Order, Receipt,
                   QOS(qos::rate_limit{.permits = 1, .period = 1h}),
                   CLIENT_QOS(qos::timeout{.per_attempt = 5s},
                              qos::retry{.max_attempts = 3,
                                         .base_backoff = 1ms,
                                         .max_backoff = 4ms,
                                         .retry_on = {502, 503, 504},
                                         .non_idempotent = true}));
COROMESH_OPERATION(buy, GET, "/api/v1/buy", Order, Receipt);
COROMESH_OPERATION(pay, POST, "/api/v1/pay", Order, Receipt);

// Fallbacks filtered by reasons (a callee's 429 had none, so none of these answered it):
// `reserve` is refused by quota's rate limiter (429 {"error":"rate_limited"}), `hold` by
// its handler's own 429 {"error":"quota_exceeded"}, `peek` by the rate limiter again,
// with a fallback only for an open circuit, which must leave the refusal alone.
COROMESH_OPERATION(reserve, GET, "/api/v1/reserve", Order, Receipt,
                   QOS(qos::rate_limit{.permits = 1, .period = 1h}),
                   CLIENT_QOS(qos::fallback{&quota_refused}.only_for({qos::Reason::rate_limited})));
COROMESH_OPERATION(hold, GET, "/api/v1/hold", Order, Receipt,
                   CLIENT_QOS(qos::fallback{&quota_refused}.only_for(
                       {qos::Reason::circuit_open, qos::Reason::callee_rejected})));
COROMESH_OPERATION(peek, GET, "/api/v1/peek", Order, Receipt,
                   QOS(qos::rate_limit{.permits = 1, .period = 1h}),
                   CLIENT_QOS(qos::fallback{&quota_refused}.only_for({qos::Reason::circuit_open})));
COROMESH_OPERATION(buy_reserved, GET, "/api/v1/buy-reserved", Order, Receipt);
COROMESH_OPERATION(buy_held, GET, "/api/v1/buy-held", Order, Receipt);
COROMESH_OPERATION(buy_peeked, GET, "/api/v1/buy-peeked", Order, Receipt);

class CalleeRefusal : public ::testing::Test {
 protected:
  void SetUp() override {
    quota_ = std::make_unique<Service>(in_process("quota"));
    auto handler = [this](Order in) -> boost::asio::awaitable<Receipt> {
      ++handled_;
      co_return Receipt{in.amount};
    };
    quota_->serve(quote, handler);
    quota_->serve(debit, handler);
    quota_->serve(reserve, handler);
    quota_->serve(peek, handler);
    quota_->serve(hold, [](Order) -> boost::asio::awaitable<Receipt> {
      throw http::HttpError(http::Status::too_many_requests, "quota_exceeded", "no quota left");
      co_return Receipt{};
    });
    quota_->start();

    shop_ = std::make_unique<Service>(in_process("shop"));
    const http::Destination at{.host = "127.0.0.1", .port = quota_->port()};
    quote_client_ = &shop_->client(quote, at);
    auto& debit_client = shop_->client(debit, at);
    shop_->serve(buy, [this](Order in, const CallContext& call) -> boost::asio::awaitable<Receipt> {
      co_return co_await quote_client_->execute(in, call);
    });
    shop_->serve(
        pay, [&debit_client](Order in, const CallContext& call) -> boost::asio::awaitable<Receipt> {
          co_return co_await debit_client.execute(in, call);  // the callee's refusal escapes
        });
    forward(buy_reserved, shop_->client(reserve, at));
    forward(buy_held, shop_->client(hold, at));
    forward(buy_peeked, shop_->client(peek, at));
    shop_->start();
  }

  // shop's `own` operation answers what its client of a quota operation gets.
  template <class Own, class Client>
  void forward(const Own& own, Client& client) {
    shop_->serve(own,
                 [&client](Order in, const CallContext& call) -> boost::asio::awaitable<Receipt> {
                   co_return co_await client.execute(in, call);
                 });
  }

  void TearDown() override {
    shop_->request_shutdown();
    EXPECT_EQ(shop_->wait(), 0);
    quota_->request_shutdown();
    EXPECT_EQ(quota_->wait(), 0);
  }

  static std::string metrics_of(const Service& service) {
    return http_fetch("127.0.0.1", service.port(), "/metrics").body;
  }

  static void expect_series(const std::string& metrics, const std::string& series) {
    EXPECT_NE(metrics.find(series), std::string::npos) << series << "\n" << metrics.substr(0, 6000);
  }

  std::atomic<int> handled_{0};
  std::unique_ptr<Service> quota_;
  std::unique_ptr<Service> shop_;
  OperationClient<std::remove_const_t<decltype(quote)>>* quote_client_ = nullptr;
};

TEST_F(CalleeRefusal, TheCallersFallbackAnswersACallees429AndItIsCountedRejected) {
  const auto first = http_fetch("127.0.0.1", shop_->port(), "/api/v1/buy?amount=5");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(boost::json::parse(first.body).at("amount").as_int64(), 5);

  const auto refused = http_fetch("127.0.0.1", shop_->port(), "/api/v1/buy?amount=6");
  ASSERT_EQ(refused.status, 200) << "the fallback did not answer quota's 429: " << refused.body;
  EXPECT_EQ(boost::json::parse(refused.body).at("amount").as_int64(), -429)
      << "the fallback sees the callee's status";
  EXPECT_EQ(handled_.load(), 1);

  // quota refused one request: sent once, never again (retry declared).
  expect_series(
      metrics_of(*quota_),
      R"(coromesh_qos_rejections_total{operation="quote",policy="rate_limit",reason="rate_limited",side="server"} 1)");
  const auto shop_metrics = metrics_of(*shop_);
  for (const char* series : {
           R"(coromesh_qos_calls_total{operation="quote",result="ok",side="client"} 1)",
           R"(coromesh_qos_calls_total{operation="quote",result="rejected",side="client"} 1)",
           R"(coromesh_qos_calls_total{operation="quote",result="caller_error",side="client"} 0)",
           R"(coromesh_qos_calls_total{operation="quote",result="error",side="client"} 0)",
           R"(coromesh_qos_calls_total{operation="buy",result="ok",side="server"} 2)",
       }) {
    expect_series(shop_metrics, series);
  }
  // The refusal is quota's policy's, counted there; shop's own policies refused nothing.
  EXPECT_EQ(shop_metrics.find(R"(coromesh_qos_rejections_total{operation="quote")"),
            std::string::npos)
      << shop_metrics.substr(0, 6000);

  const auto objects = quote_client_->qos().objects();
  ASSERT_TRUE(objects->breaker);
  EXPECT_EQ(objects->breaker->state(), qos::CircuitBreaker::State::closed);
  EXPECT_EQ(objects->breaker->snapshot().failures, 0U);
}

TEST_F(CalleeRefusal, APostTheCalleeRefusedIsSentOnceAndItsCallerCouldNotServe) {
  const auto first = http_fetch("127.0.0.1", shop_->port(), "/api/v1/pay",
                                {.method = "POST", .body = R"({"amount": 1})"});
  ASSERT_EQ(first.status, 200) << first.body;

  const auto refused = http_fetch("127.0.0.1", shop_->port(), "/api/v1/pay",
                                  {.method = "POST", .body = R"({"amount": 2})"});
  // Without a fallback the refusal escapes pay's handler: pay could not serve, 503 with
  // quota's code (upstream_error_status), counted as pay's failure on its server side.
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(std::string(boost::json::parse(refused.body).at("error").as_string()), "rate_limited")
      << refused.body;
  EXPECT_EQ(handled_.load(), 1);

  expect_series(
      metrics_of(*quota_),
      R"(coromesh_qos_rejections_total{operation="debit",policy="rate_limit",reason="rate_limited",side="server"} 1)");
  const auto shop_metrics = metrics_of(*shop_);
  for (const char* series : {
           R"(coromesh_qos_calls_total{operation="debit",result="rejected",side="client"} 1)",
           R"(coromesh_qos_calls_total{operation="debit",result="caller_error",side="client"} 0)",
           R"(coromesh_qos_calls_total{operation="pay",result="error",side="server"} 1)",
       }) {
    expect_series(shop_metrics, series);
  }
}

TEST_F(CalleeRefusal, AFallbackNamesACalleesRefusalByItsReason) {
  const auto fetch = [this](const std::string& path) {
    return http_fetch("127.0.0.1", shop_->port(), path + "?amount=7");
  };
  ASSERT_EQ(fetch("/api/v1/buy-reserved").status, 200);
  const auto rate_limited = fetch("/api/v1/buy-reserved");
  ASSERT_EQ(rate_limited.status, 200)
      << "a fallback for rate_limited did not answer quota's 429 rate_limited: "
      << rate_limited.body;
  EXPECT_EQ(boost::json::parse(rate_limited.body).at("amount").as_int64(), -429);

  const auto held = fetch("/api/v1/buy-held");
  ASSERT_EQ(held.status, 200) << "a fallback for callee_rejected did not answer quota's 429 "
                                 "quota_exceeded: "
                              << held.body;
  EXPECT_EQ(boost::json::parse(held.body).at("amount").as_int64(), -429);

  ASSERT_EQ(fetch("/api/v1/buy-peeked").status, 200);
  const auto peeked = fetch("/api/v1/buy-peeked");
  // No fallback for it: the refusal escapes the handler, which could not serve (503).
  EXPECT_EQ(peeked.status, 503) << "a fallback for circuit_open answered a 429: " << peeked.body;

  const auto shop_metrics = metrics_of(*shop_);
  for (const char* series : {
           R"(coromesh_qos_calls_total{operation="reserve",result="rejected",side="client"} 1)",
           R"(coromesh_qos_calls_total{operation="hold",result="rejected",side="client"} 1)",
           R"(coromesh_qos_calls_total{operation="peek",result="rejected",side="client"} 1)",
       }) {
    expect_series(shop_metrics, series);
  }
  // Still quota's refusals, not shop's: no policy of shop's refused anything.
  EXPECT_EQ(shop_metrics.find("coromesh_qos_rejections_total{"), std::string::npos)
      << shop_metrics.substr(0, 6000);
}

}  // namespace
}  // namespace coromesh::testing
