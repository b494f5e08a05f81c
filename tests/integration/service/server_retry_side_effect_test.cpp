// A retry declared on a served operation runs its handler again. When the handler has
// sent a non-idempotent call downstream (a POST that may have taken effect before it
// failed), running it again would send that call twice: the retry must stop there,
// whatever the served operation's own method says. A POST that never left (its connect
// was refused) sent nothing: the retry may run the handler again.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <coromesh/service/service.hpp>
#include <memory>
#include <optional>
#include <string>

#include "http_fetch.hpp"
#include "in_process_service.hpp"
#include "test_env.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct Order {
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(Order, (), (amount))

struct Receipt {
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(Receipt, (), (amount))

// Downstream: a POST that fails after it may have taken effect, and a GET that fails.
COROMESH_OPERATION(charge, POST, "/api/v1/charge", Order, Receipt);
COROMESH_OPERATION(quote, GET, "/api/v1/quote", Order, Receipt);
// The same POST, served by nobody (a service has one client per operation).
COROMESH_OPERATION(charge_elsewhere, POST, "/api/v1/charge", Order, Receipt);
// Upstream: GET operations (idempotent by their method) whose servers retry a 503, each
// calling one of the two above.
constexpr coromesh::qos::retry kServerRetry{
    .max_attempts = 3, .base_backoff = 1ms, .max_backoff = 2ms};
COROMESH_OPERATION(checkout, GET, "/api/v1/checkout", Order, Receipt, QOS(kServerRetry));
COROMESH_OPERATION(estimate, GET, "/api/v1/estimate", Order, Receipt, QOS(kServerRetry));
// Each calling `charge` where nothing listens: alone, after a `charge` that reached
// payments, and detached (the handler returns before the POST's connect fails).
COROMESH_OPERATION(checkout_nowhere, GET, "/api/v1/checkout-nowhere", Order, Receipt,
                   QOS(kServerRetry));
COROMESH_OPERATION(checkout_twice, GET, "/api/v1/checkout-twice", Order, Receipt,
                   QOS(kServerRetry));
COROMESH_OPERATION(checkout_detached, GET, "/api/v1/checkout-detached", Order, Receipt,
                   QOS(kServerRetry));

class ServerRetrySideEffect : public ::testing::Test {
 protected:
  void SetUp() override {
    payments_ = std::make_unique<coromesh::Service>(coromesh::testing::in_process("payments"));
    auto unavailable = [](std::atomic<int>& calls) {
      return [&calls](Order) -> asio::awaitable<Receipt> {
        ++calls;
        throw coromesh::http::HttpError(coromesh::http::Status::service_unavailable, "busy",
                                        "failing on purpose");
        co_return Receipt{};
      };
    };
    payments_->serve(charge, unavailable(charges_));
    payments_->serve(quote, unavailable(quotes_));
    payments_->start();

    shop_ = std::make_unique<coromesh::Service>(coromesh::testing::in_process("shop"));
    const coromesh::http::Destination payments{.host = "127.0.0.1", .port = payments_->port()};
    auto& charge_client = shop_->client(charge, payments);
    auto& quote_client = shop_->client(quote, payments);
    shop_->serve(
        checkout,
        [&charge_client](Order in, const coromesh::CallContext& call) -> asio::awaitable<Receipt> {
          co_return co_await charge_client.execute(in, call);
        });
    shop_->serve(
        estimate,
        [&quote_client](Order in, const coromesh::CallContext& call) -> asio::awaitable<Receipt> {
          co_return co_await quote_client.execute(in, call);
        });
    // No listener: every connect is refused, nothing is ever sent.
    const coromesh::http::Destination nowhere{.host = "127.0.0.1",
                                              .port = coromesh::testing::free_port()};
    auto& charge_nowhere = shop_->client(charge_elsewhere, nowhere);
    shop_->serve(checkout_nowhere,
                 [this, &charge_nowhere](
                     Order in, const coromesh::CallContext& call) -> asio::awaitable<Receipt> {
                   ++nowhere_runs_;
                   co_return co_await charge_nowhere.execute(in, call);
                 });
    shop_->serve(checkout_twice,
                 [this, &charge_client, &charge_nowhere](
                     Order in, const coromesh::CallContext& call) -> asio::awaitable<Receipt> {
                   ++twice_runs_;
                   try {
                     co_await charge_client.execute(in, call);
                   } catch (const std::exception&) {
                     // payments failed it; it may have taken effect all the same
                   }
                   co_return co_await charge_nowhere.execute(in, call);
                 });
    shop_->serve(checkout_detached,
                 [this, &charge_nowhere](
                     Order in, const coromesh::CallContext& call) -> asio::awaitable<Receipt> {
                   asio::co_spawn(
                       co_await asio::this_coro::executor, charge_nowhere.execute(in, call),
                       [this](const std::exception_ptr&, const Receipt&) { ++detached_done_; });
                   co_return Receipt{.amount = in.amount};
                 });
    shop_->start();
  }

  void TearDown() override {
    shop_->request_shutdown();
    shop_->wait();
    payments_->request_shutdown();
    payments_->wait();
  }

  coromesh::testing::FetchResult shop_get(const std::string& target) {
    return coromesh::testing::http_fetch("127.0.0.1", shop_->port(), target);
  }

  std::atomic<int> charges_{0};
  std::atomic<int> quotes_{0};
  std::atomic<int> nowhere_runs_{0};
  std::atomic<int> twice_runs_{0};
  std::atomic<int> detached_done_{0};
  std::unique_ptr<coromesh::Service> payments_;
  std::unique_ptr<coromesh::Service> shop_;
};

TEST_F(ServerRetrySideEffect, AHandlerThatSentAPostIsNotRunAgain) {
  const auto answer = shop_get("/api/v1/checkout?amount=5");
  EXPECT_GE(answer.status, 500) << answer.body;
  EXPECT_EQ(charges_.load(), 1) << "the POST was sent again by the checkout's server retry";
}

// The control: with an idempotent call downstream the server's retry runs as declared.
TEST_F(ServerRetrySideEffect, AHandlerThatSentOnlyIdempotentCallsIsRetried) {
  const auto answer = shop_get("/api/v1/estimate?amount=5");
  EXPECT_GE(answer.status, 500) << answer.body;
  EXPECT_GE(quotes_.load(), 3) << "the server's retry did not run the handler again";
}

// A POST whose connect was refused never left: running the handler again sends nothing
// twice, so the server's retry runs as declared (it used to stop at the first attempt:
// the call was marked unrepeatable as it was handed to the client, and stayed so).
TEST_F(ServerRetrySideEffect, AHandlerWhosePostNeverConnectedIsRetried) {
  const auto answer = shop_get("/api/v1/checkout-nowhere?amount=5");
  EXPECT_GE(answer.status, 500) << answer.body;
  EXPECT_EQ(nowhere_runs_.load(), 3) << "the server's retry did not run the handler again";
}

// One POST reached payments, a later one never connected: the first one keeps the
// handler from running again.
TEST_F(ServerRetrySideEffect, APostThatLeftKeepsTheHandlerFromRunningAgain) {
  const auto answer = shop_get("/api/v1/checkout-twice?amount=5");
  EXPECT_GE(answer.status, 500) << answer.body;
  EXPECT_EQ(twice_runs_.load(), 1) << "the POST that reached payments was sent again";
  EXPECT_EQ(charges_.load(), 1);
}

// A call the handler detached ends after the handler's attempt is gone: what it marks
// must not be the attempt's freed frame (ASan checks this suite with Asio's frame
// recycling off, so a freed frame is reported).
TEST_F(ServerRetrySideEffect, ADetachedPostMarksNothingFreedWhenItEndsLater) {
  const auto answer = shop_get("/api/v1/checkout-detached?amount=5");
  EXPECT_EQ(answer.status, 200) << answer.body;
  EXPECT_TRUE(
      coromesh::testing::wait_until([this] { return detached_done_.load() == 1; }, 10'000ms))
      << "the detached POST did not end";
}

}  // namespace
