// Whose fault is it: the decision table of qos/fault.hpp, row by row, through real
// chains built with the service's classifier, and the failures of issue 8 it fixes.

#include "coromesh/qos/fault.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "coromesh/http/client.hpp"
#include "coromesh/http/error.hpp"
#include "coromesh/qos/interceptors.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/remote_error.hpp"
#include "run_awaitable.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

using test_support::run;

using Thrower = std::function<void()>;

asio::awaitable<int> throwing(Thrower thrower, int* calls) {
  ++*calls;
  thrower();
  co_return 1;
}

// Runs one call that throws through `chain`; returns the number of attempts, and
// whether it ended in a value (a fallback's) rather than an exception.
struct Ran {
  int calls = 0;
  bool value = false;
};
Ran run_failing(const Chain<int>& chain, const Thrower& thrower) {
  asio::io_context io;
  Ran ran;
  try {
    ran.value = run(io, chain.execute([&] { return throwing(thrower, &ran.calls); })) == -1;
  } catch (...) {
    ran.value = false;
  }
  return ran;
}

struct Row {
  const char* name;
  Thrower thrower;
  FaultClass kind;
  bool against_callee;  // a breaker failure, an adaptive drop
  bool retried;
  bool fallback;
};

// The table of fault.hpp, one exception per row.
std::vector<Row> rows() {
  using http::ClientErrc;
  using http::ClientError;
  using http::HttpError;
  using http::Status;
  const auto client_error = [](ClientErrc errc) {
    return [errc] { throw ClientError(errc, "upstream"); };
  };
  return {
      {"handler_400", [] { throw HttpError(Status::bad_request, "bad", "r is 0"); },
       FaultClass::caller_error, false, false, false},
      {"remote_404_unknown_sku", [] { throw RemoteError(404, "unknown_sku", "no such sku"); },
       FaultClass::caller_error, false, false, false},
      {"remote_400_invalid_field", [] { throw RemoteError(400, "invalid_field", "l"); },
       FaultClass::caller_error, false, false, false},
      {"remote_409_conflict", [] { throw RemoteError(409, "conflict", "taken"); },
       FaultClass::caller_error, false, false, false},
      // The callee's rate limit refused (its own limit, shared by all its callers, before
      // any work): a refusal, like our own rate limiter's, not the caller's error. Was
      // caller_error like every 4xx: the fallback never answered it.
      {"remote_429_rate_limited",
       [] { throw RemoteError(429, "rate_limited", "qos policy 'rate_limit' rejected"); },
       FaultClass::rejected, false, false, true},
      {"handler_429", [] { throw HttpError(Status::too_many_requests, "quota", "try later"); },
       FaultClass::rejected, false, false, true},
      {"remote_503", [] { throw RemoteError(503, "overloaded", ""); }, FaultClass::callee_failure,
       true, true, true},
      {"remote_500", [] { throw RemoteError(500, "bug", ""); }, FaultClass::callee_failure, true,
       false, true},
      {"handler_500", [] { throw HttpError(Status::internal_server_error, "bug", ""); },
       FaultClass::callee_failure, true, false, true},
      {"handler_bug", [] { throw std::logic_error("null pointer"); }, FaultClass::callee_failure,
       true, false, true},
      {"bad_response", client_error(ClientErrc::bad_response), FaultClass::callee_failure, true,
       false, true},
      {"connect_failed", client_error(ClientErrc::connect_failed), FaultClass::transport, true,
       true, true},
      {"connection_closed", client_error(ClientErrc::connection_closed), FaultClass::transport,
       true, true, true},
      {"client_timeout", client_error(ClientErrc::timeout), FaultClass::timeout, true, true, true},
      // Consul has not answered yet: the callee was never reached, our own refusal.
      {"discovery_unavailable", client_error(ClientErrc::discovery_unavailable),
       FaultClass::rejected, false, false, true},
      // Nor without our own leaf (Connect-native): no endpoint picked, nothing sent.
      {"identity_unavailable", client_error(ClientErrc::identity_unavailable), FaultClass::rejected,
       false, false, true},
      {"cut_off", [] { throw QosRejected::cut_off_by("timeout"); }, FaultClass::timeout, true, true,
       true},
      {"deadline_spent", [] { throw QosRejected("deadline", Reason::deadline_exceeded); },
       FaultClass::rejected, false, false, true},
      {"cancelled", [] { throw boost::system::system_error(asio::error::operation_aborted); },
       FaultClass::cancelled, false, false, false},
      {"rate_limited", [] { throw QosRejected("rate_limit", Reason::rate_limited); },
       FaultClass::rejected, false, false, true},
      {"circuit_open", [] { throw QosRejected("circuit_breaker", Reason::circuit_open); },
       FaultClass::rejected, false, false, true},
  };
}

class FaultTable : public ::testing::TestWithParam<Row> {};

TEST_P(FaultTable, EveryPolicyFollowsTheClass) {
  const Row& row = GetParam();
  const ChainOptions options{.classify = classify_service_fault};
  try {
    row.thrower();
  } catch (...) {
    EXPECT_EQ(to_string(Fault::from(std::current_exception(), classify_service_fault).kind),
              to_string(row.kind));
  }
  EXPECT_EQ(counts_against_callee(row.kind), row.against_callee);

  auto breaker = std::make_shared<CircuitBreaker>(
      CircuitBreakerConfig{.window_size = 1, .minimum_calls = 1, .wait_in_open = 1h});
  run_failing(Chain<int>({std::make_shared<CircuitBreakerInterceptor>(breaker)}, options),
              row.thrower);
  EXPECT_EQ(breaker->state() == CircuitBreaker::State::open, row.against_callee) << "breaker";

  auto limit = std::make_shared<AdaptiveLimit>(AdaptiveLimitConfig{.initial_limit = 20});
  run_failing(Chain<int>({std::make_shared<AdaptiveLimitInterceptor>(limit)}, options),
              row.thrower);
  EXPECT_EQ(limit->limit() < 20, row.against_callee) << "adaptive limit";
  EXPECT_EQ(limit->in_flight(), 0U);

  const Ran retried =
      run_failing(Chain<int>({std::make_shared<RetryInterceptor>(RetryConfig{
                                 .max_attempts = 3, .base_backoff = 0ms, .max_backoff = 0ms})},
                             options),
                  row.thrower);
  EXPECT_EQ(retried.calls, row.retried ? 3 : 1) << "retry";

  const Ran fell_back =
      run_failing(Chain<int>({std::make_shared<Fallback<int>>(Fallback<int>::value(-1))}, options),
                  row.thrower);
  EXPECT_EQ(fell_back.value, row.fallback) << "fallback";
}

INSTANTIATE_TEST_SUITE_P(Rows, FaultTable, ::testing::ValuesIn(rows()),
                         [](const ::testing::TestParamInfo<Row>& info) {
                           return std::string(info.param.name);
                         });

// A callee's 429 keeps its status in the classification (a fallback function reads it),
// is a refusal without a policy or reason of ours (the metrics and the log line follow
// Fault::refused(): fault_reporting_test.cpp), and is never retried: at once, a retry
// only adds to the callee's overload (and retry_on cannot list 429: retry.hpp refuses it).
TEST(CalleesRefusal, KeepsItsStatusAndIsNeverRetried) {
  const auto classified =
      classify_service_fault(std::make_exception_ptr(RemoteError(429, "rate_limited", "")));
  EXPECT_EQ(to_string(classified.kind), to_string(FaultClass::rejected));
  EXPECT_EQ(classified.status, 429U);
  const Fault fault = Fault::from(std::make_exception_ptr(RemoteError(429, "rate_limited", "")),
                                  classify_service_fault);
  EXPECT_TRUE(fault.refused());
  EXPECT_FALSE(fault.reason.has_value());
  EXPECT_EQ(fault.policy, "");
  EXPECT_EQ(fault.status, 429U);

  const Ran ran = run_failing(
      Chain<int>({std::make_shared<RetryInterceptor>(RetryConfig{.max_attempts = 3,
                                                                 .base_backoff = 0ms,
                                                                 .max_backoff = 0ms,
                                                                 .idempotent_only = false})},
                 {.classify = classify_service_fault}),
      [] { throw RemoteError(429, "rate_limited", ""); });
  EXPECT_EQ(ran.calls, 1);
  // By the status alone (the sidecar counts the answers it passes on so).
  EXPECT_EQ(to_string(classify_error_status(429).kind), to_string(FaultClass::rejected));
  for (unsigned status : {400U, 404U, 409U, 422U}) {
    EXPECT_EQ(to_string(classify_error_status(status).kind), to_string(FaultClass::caller_error))
        << status;
  }
  EXPECT_EQ(to_string(classify_error_status(503).kind), to_string(FaultClass::callee_failure));
}

// --- qos's own classifier ------------------------------------------------------------------

FaultClass default_class(const Thrower& thrower) {
  try {
    thrower();
  } catch (...) {
    return Fault::from(std::current_exception()).kind;
  }
  return FaultClass::callee_failure;
}

TEST(DefaultClassifier, KnowsRejectionsSystemErrorsAndExceptions) {
  EXPECT_EQ(default_class([] { throw QosRejected("bulkhead", Reason::bulkhead_full); }),
            FaultClass::rejected);
  EXPECT_EQ(default_class([] { throw QosRejected::cut_off_by("timeout"); }), FaultClass::timeout);
  EXPECT_EQ(default_class([] { throw QosRejected("timeout", Reason::deadline_exceeded); }),
            FaultClass::rejected);
  EXPECT_EQ(
      default_class([] { throw boost::system::system_error(asio::error::operation_aborted); }),
      FaultClass::cancelled);
  EXPECT_EQ(default_class([] { throw boost::system::system_error(asio::error::timed_out); }),
            FaultClass::timeout);
  EXPECT_EQ(
      default_class([] { throw boost::system::system_error(asio::error::connection_refused); }),
      FaultClass::transport);
  EXPECT_EQ(default_class([] { throw std::runtime_error("bug"); }), FaultClass::callee_failure);
  EXPECT_EQ(default_class([] { throw 42; }), FaultClass::callee_failure);
  // Without the service classifier an HTTP error is just an exception.
  EXPECT_EQ(default_class([] { throw RemoteError(404, "unknown_sku", ""); }),
            FaultClass::callee_failure);
}

// --- a server chain's classifier ------------------------------------------------------------

FaultClassification served(const Thrower& thrower) {
  try {
    thrower();
  } catch (...) {
    return classify_served_fault(std::current_exception());
  }
  return {};
}

TEST(ServedClassifier, JudgesWhatEscapesAHandlerByWhatItsCallerIsAnswered) {
  struct Case {
    const char* name;
    Thrower thrower;
    FaultClass kind;
    unsigned status;
  };
  const Case cases[] = {
      // The handler's upstream refused what this service sent: answered 502, our failure.
      {"upstream 400", [] { throw RemoteError(400, "invalid_field", ""); },
       FaultClass::callee_failure, 502},
      {"upstream 429", [] { throw RemoteError(429, "rate_limited", ""); },
       FaultClass::callee_failure, 503},
      {"upstream 504", [] { throw RemoteError(504, "deadline_exceeded", ""); },
       FaultClass::callee_failure, 504},
      {"upstream 500", [] { throw RemoteError(500, "internal", ""); }, FaultClass::callee_failure,
       502},
      // The handler's own call refused by its QoS: answered 503, or 504 for the deadline.
      {"own call's breaker open",
       [] { throw DependencyRefused(QosRejected("circuit_breaker", Reason::circuit_open)); },
       FaultClass::callee_failure, 503},
      {"own call's rate limit",
       [] { throw DependencyRefused(QosRejected("rate_limit", Reason::rate_limited)); },
       FaultClass::callee_failure, 503},
      {"own call's deadline spent",
       [] { throw DependencyRefused(QosRejected("deadline", Reason::deadline_exceeded)); },
       FaultClass::timeout, 504},
      // The handler's own call found no answer from Consul: answered 503, our failure.
      {"own call's discovery not ready",
       [] { throw http::ClientError(http::ClientErrc::discovery_unavailable, "no answer"); },
       FaultClass::callee_failure, 503},
      {"own call without its own leaf",
       [] { throw http::ClientError(http::ClientErrc::identity_unavailable, "no leaf"); },
       FaultClass::callee_failure, 503},
      // The rest as on the client side: a handler's own 4xx is its caller's fault, its
      // own 429 this operation's refusal (answered 429, as its rate limiter answers), and
      // this operation's own policies refuse rather than fail.
      {"handler's 400",
       [] { throw http::HttpError(http::Status::bad_request, "invalid_field", "no"); },
       FaultClass::caller_error, 400},
      {"handler's 429",
       [] { throw http::HttpError(http::Status::too_many_requests, "quota", "later"); },
       FaultClass::rejected, 429},
      {"own bulkhead", [] { throw QosRejected("bulkhead", Reason::bulkhead_full); },
       FaultClass::rejected, 0},
  };
  for (const auto& c : cases) {
    const auto got = served(c.thrower);
    EXPECT_EQ(to_string(got.kind), to_string(c.kind)) << c.name;
    if (c.status != 0) {
      EXPECT_EQ(got.status, c.status) << c.name;
    }
  }
}

// A call its timeout cut off was made and ran too long; it was not refused, and what its
// caller reads must not say so (a slow callee would otherwise read as "timed out after
// N ms waiting for a response" or as "refused", by which timer fired first).
TEST(DependencyRefusedText, ACallCutOffIsNotSaidToBeRefused) {
  const QosRejected cut = QosRejected::cut_off_by("timeout");
  EXPECT_EQ(std::string(cut.what()),
            "qos policy 'timeout' cut the call off at its deadline: deadline_exceeded");
  EXPECT_EQ(std::string(DependencyRefused(cut).what()),
            "a call of this service's was cut off by its timeout: qos policy 'timeout' cut the "
            "call off at its deadline: deadline_exceeded");
  // A refusal, a spent deadline's included, stays one.
  EXPECT_EQ(std::string(DependencyRefused(QosRejected("rate_limit", Reason::rate_limited)).what()),
            "a call of this service's was refused by its rate_limit: qos policy 'rate_limit' "
            "rejected the call: rate_limited");
  EXPECT_EQ(std::string(QosRejected("deadline", Reason::deadline_exceeded).what()),
            "qos policy 'deadline' rejected the call: deadline_exceeded");
}

// --- the failures of issue 8 ---------------------------------------------------------------

asio::awaitable<int> slow(Duration duration, int* calls) {
  ++*calls;
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::use_awaitable);
  co_return 7;
}

// One call of `chain` (a slow one) whose caller gives up after 5 ms, cancelling it from
// outside the chain; returns which side won (1: the caller's timer).
int run_leaving_caller(asio::io_context& io, Chain<int>& chain, int& calls) {
  using namespace asio::experimental::awaitable_operators;
  auto caller = [&]() -> asio::awaitable<int> {
    asio::steady_timer gives_up(co_await asio::this_coro::executor, 5ms);
    auto winner = co_await (chain.execute([&calls] { return slow(10s, &calls); }) ||
                            gives_up.async_wait(asio::use_awaitable));
    co_return static_cast<int>(winner.index());
  };
  return run(io, caller());
}

// Was: the timeout cancelled the call, the adaptive limit inside it saw a neutral
// cancellation, and ten timed-out calls left the limit at 20.
TEST(FaultSemantics, TimedOutCallsShrinkTheAdaptiveLimit) {
  asio::io_context io;
  auto limit = std::make_shared<AdaptiveLimit>(AdaptiveLimitConfig{.initial_limit = 20});
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(2ms),
                    std::make_shared<AdaptiveLimitInterceptor>(limit)});
  int calls = 0;
  for (int i = 0; i < 10; ++i) {
    EXPECT_THROW(run(io, chain.execute([&calls] { return slow(10s, &calls); })), QosRejected);
  }
  EXPECT_EQ(calls, 10);
  EXPECT_LT(limit->limit(), 20U);
  EXPECT_EQ(limit->in_flight(), 0U);
}

// Was: a bulkhead with a wait queue is an asynchronous interceptor, so the adaptive limit
// behind it ran in a segment of its own and classified the timeout's cut-off before the
// timeout had said it was one: a neutral cancellation, the limit stayed at 20.
TEST(FaultSemantics, TimedOutCallsShrinkTheLimitBehindAQueuedBulkhead) {
  asio::io_context io;
  auto limit = std::make_shared<AdaptiveLimit>(AdaptiveLimitConfig{.initial_limit = 20});
  auto bulkhead = std::make_shared<Bulkhead>(
      BulkheadConfig{.max_concurrent = 4, .max_queue = 4, .max_wait = 1s});
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(2ms),
                    std::make_shared<BulkheadInterceptor>(bulkhead),
                    std::make_shared<AdaptiveLimitInterceptor>(limit)});
  ASSERT_EQ(chain.order(), (std::vector<std::string>{"timeout", "bulkhead", "adaptive_limit"}));
  int calls = 0;
  for (int i = 0; i < 10; ++i) {
    EXPECT_THROW(run(io, chain.execute([&calls] { return slow(10s, &calls); })), QosRejected);
  }
  EXPECT_EQ(calls, 10);
  EXPECT_LT(limit->limit(), 20U);
  EXPECT_EQ(limit->in_flight(), 0U);
  EXPECT_EQ(bulkhead->in_use(), 0U);
}

// Was: a call whose deadline its caller had already spent was refused before it started
// (by the timeout, or by the client stub before sending), and the breaker outside counted
// that refusal as a timeout of the callee: callers sending spent deadlines opened the
// circuit for everyone else.
TEST(FaultSemantics, ASpentDeadlineIsNotTheCalleesFailure) {
  asio::io_context io;
  ManualClock clock;
  auto breaker = std::make_shared<CircuitBreaker>(
      CircuitBreakerConfig{.window_size = 1, .minimum_calls = 1, .wait_in_open = 1h}, clock);
  Chain<int> chain({std::make_shared<CircuitBreakerInterceptor>(breaker),
                    std::make_shared<TimeoutInterceptor>(1s)},
                   {.clock = &clock, .classify = classify_service_fault});
  int calls = 0;
  const CallOptions spent{.deadline = Deadline::after(0ms, clock)};
  for (int i = 0; i < 3; ++i) {
    EXPECT_THROW(run(io, chain.execute([&calls] { return slow(10s, &calls); }, spent)),
                 QosRejected);
  }
  EXPECT_EQ(calls, 0);
  // The client stub's own check before sending (operation_client.cpp) throws the same.
  EXPECT_THROW(run(io, chain.execute([&calls] {
                 return throwing([] { throw QosRejected("deadline", Reason::deadline_exceeded); },
                                 &calls);
               })),
               QosRejected);
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::closed);
  EXPECT_EQ(breaker->snapshot().calls, 0U);
}

// The caller going away is not the callee's fault: neutral for the limit and the breaker.
TEST(FaultSemantics, TheCallerGoingAwayIsNeutral) {
  asio::io_context io;
  auto limit = std::make_shared<AdaptiveLimit>(AdaptiveLimitConfig{.initial_limit = 20});
  auto breaker = std::make_shared<CircuitBreaker>(
      CircuitBreakerConfig{.window_size = 1, .minimum_calls = 1, .wait_in_open = 1h});
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(10s),
                    std::make_shared<CircuitBreakerInterceptor>(breaker, 650),
                    std::make_shared<AdaptiveLimitInterceptor>(limit)});
  int calls = 0;
  EXPECT_EQ(run_leaving_caller(io, chain, calls), 1);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(limit->limit(), 20U);
  EXPECT_EQ(limit->in_flight(), 0U);
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::closed);
  EXPECT_EQ(breaker->snapshot().calls, 0U);
}

// Was: a call whose caller left while it waited in the bulkhead's queue was refused with
// bulkhead_full: a rejection counted, and logged, for a call nobody refused (and a call
// the timeout cut off there was counted twice, as the bulkhead's and the timeout's).
TEST(FaultSemantics, LeavingTheBulkheadQueueIsNotARejection) {
  asio::io_context io;
  auto bulkhead = std::make_shared<Bulkhead>(
      BulkheadConfig{.max_concurrent = 1, .max_queue = 1, .max_wait = 10s});
  Chain<int> chain({std::make_shared<BulkheadInterceptor>(bulkhead)});
  std::vector<std::string> rejections;
  chain.on_rejection([&rejections](std::string_view policy, Reason reason) {
    rejections.push_back(std::string(policy) + ":" + std::string(to_string(reason)));
  });
  const Bulkhead::Permit taken = bulkhead->try_acquire();  // the one slot is busy
  ASSERT_TRUE(taken);
  int calls = 0;
  EXPECT_EQ(run_leaving_caller(io, chain, calls), 1);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(rejections, std::vector<std::string>{});
  EXPECT_EQ(bulkhead->queued(), 0U);
  EXPECT_EQ(bulkhead->in_use(), 1U);  // the slot taken above, nothing else
}

// Was: the shop's 404 unknown_sku came back as a 200 with the fallback value.
TEST(FaultSemantics, FallbackLeavesTheCallersOwn404Alone) {
  Chain<int> chain({std::make_shared<Fallback<int>>(Fallback<int>::value(-1))},
                   {.classify = classify_service_fault});
  asio::io_context io;
  int calls = 0;
  try {
    run(io, chain.execute([&calls] {
      return throwing([] { throw RemoteError(404, "unknown_sku", "no such sku"); }, &calls);
    }));
    ADD_FAILURE() << "the fallback answered a 404";
  } catch (const RemoteError& error) {
    EXPECT_EQ(error.code(), "unknown_sku");
  }
  // Opting in is possible.
  Chain<int> opted_in({std::make_shared<Fallback<int>>(Fallback<int>::value(-1),
                                                       FallbackFilter{.caller_errors = true})},
                      {.classify = classify_service_fault});
  EXPECT_EQ(run(io, opted_in.execute([&calls] {
              return throwing([] { throw RemoteError(404, "unknown_sku", ""); }, &calls);
            })),
            -1);
}

// Was: every std::exception was retried, so a bug in a handler ran three times.
TEST(FaultSemantics, RetryLeavesAHandlersBugAlone) {
  asio::io_context io;
  Chain<int> chain({std::make_shared<RetryInterceptor>(
      RetryConfig{.max_attempts = 3, .base_backoff = 0ms, .max_backoff = 0ms})});
  int calls = 0;
  EXPECT_THROW(run(io, chain.execute([&calls] {
                 return throwing([] { throw std::logic_error("bug"); }, &calls);
               })),
               std::logic_error);
  EXPECT_EQ(calls, 1);
}

// A fault is classified once however many interceptors it passes.
int classifications = 0;
FaultClassification counting_classifier(const std::exception_ptr& error) noexcept {
  ++classifications;
  return classify_fault(error);
}

TEST(FaultSemantics, AFaultIsClassifiedOnce) {
  asio::io_context io;
  auto breaker = std::make_shared<CircuitBreaker>(CircuitBreakerConfig{});
  auto limit = std::make_shared<AdaptiveLimit>(AdaptiveLimitConfig{});
  Chain<int> chain(
      {std::make_shared<Fallback<int>>(Fallback<int>::value(-1)),
       std::make_shared<CircuitBreakerInterceptor>(breaker), std::make_shared<LogInterceptor>(),
       std::make_shared<AdaptiveLimitInterceptor>(limit)},
      {.classify = counting_classifier});
  classifications = 0;
  int calls = 0;
  EXPECT_EQ(run(io, chain.execute([&calls] {
              return throwing([] { throw std::runtime_error("bug"); }, &calls);
            })),
            -1);
  EXPECT_EQ(classifications, 1);
}

// Was: the fallback chose by the exception's type, not by the fault's class: a call a
// preemptive timeout cut off (a timeout, thrown as a QosRejected) was left unanswered by a
// fallback for errors only, and a call discovery could not place (a refusal, thrown as a
// ClientError) was answered by a fallback for rejections not at all, by one for errors
// only instead.
TEST(FaultSemantics, FallbackFollowsTheClassNotTheExceptionType) {
  const ChainOptions options{.classify = classify_service_fault};
  const auto fallback_for = [&options](FallbackFilter filter) {
    return Chain<int>({std::make_shared<Fallback<int>>(Fallback<int>::value(-1), filter)}, options);
  };
  const Chain<int> errors_only = fallback_for({.rejections = false, .errors = true});
  const Chain<int> rejections_only = fallback_for({.rejections = true, .errors = false});
  const Thrower cut_off = [] { throw QosRejected::cut_off_by("timeout"); };
  const Thrower unplaced = [] {
    throw http::ClientError(http::ClientErrc::discovery_unavailable, "upstream");
  };
  EXPECT_TRUE(run_failing(errors_only, cut_off).value) << "a cut-off is a timeout: an error";
  EXPECT_FALSE(run_failing(rejections_only, cut_off).value) << "a cut-off is no refusal";
  EXPECT_TRUE(run_failing(rejections_only, unplaced).value) << "an unplaced call is a refusal";
  EXPECT_FALSE(run_failing(errors_only, unplaced).value) << "an unplaced call is no error";
  // A reason filter picks among the refusals; a refusal without a reason matches none.
  const Chain<int> open_circuit_only =
      fallback_for({.errors = false, .reasons = {Reason::circuit_open}});
  EXPECT_TRUE(
      run_failing(open_circuit_only, [] { throw QosRejected("cb", Reason::circuit_open); }).value);
  EXPECT_FALSE(
      run_failing(open_circuit_only, [] { throw QosRejected("rl", Reason::rate_limited); }).value);
  EXPECT_FALSE(run_failing(open_circuit_only, unplaced).value);
}

// --- not delivered: could the failed attempt's request have reached the callee? ---------

// Judged once, by the classifier, with the class (service/fault_classifier.hpp): nothing
// was sent (a connect refused or timed out, a failed TLS handshake, a refused peer, no
// endpoint), or the callee's sidecar answered that its service refused the connection
// (x-coromesh-not-delivered). Anything sent, even partly, with its answer lost or
// malformed, and any answer of the callee's own code, may have been processed.
TEST(NotDelivered, IsJudgedOnceByTheServiceClassifier) {
  using http::ClientErrc;
  const auto of = [](std::exception_ptr error) { return classify_service_fault(error); };
  for (const auto errc :
       {ClientErrc::connect_failed, ClientErrc::connect_timeout, ClientErrc::tls_handshake,
        ClientErrc::peer_rejected, ClientErrc::no_endpoint}) {
    const auto classified = of(std::make_exception_ptr(http::ClientError(errc, "upstream")));
    EXPECT_TRUE(classified.not_delivered) << static_cast<int>(errc);
    EXPECT_EQ(to_string(classified.kind), to_string(FaultClass::transport));
  }
  for (const auto errc : {ClientErrc::connection_closed, ClientErrc::outcome_unknown,
                          ClientErrc::bad_response, ClientErrc::timeout}) {
    EXPECT_FALSE(of(std::make_exception_ptr(http::ClientError(errc, "upstream"))).not_delivered)
        << "sent, its answer lost or malformed: " << static_cast<int>(errc);
  }
  // The callee's sidecar's own 503: the class of its status (the callee's failure, for
  // its breaker), and nothing ran.
  const auto sidecars = of(std::make_exception_ptr(
      RemoteError(503, "local_unavailable", "the local service refuses connections", true)));
  EXPECT_TRUE(sidecars.not_delivered);
  EXPECT_EQ(to_string(sidecars.kind), to_string(FaultClass::callee_failure));
  EXPECT_EQ(sidecars.status, 503U);
  // The callee's own code answered: 503, 502 or 429, it received the request.
  EXPECT_FALSE(of(std::make_exception_ptr(RemoteError(503, "flaky", ""))).not_delivered);
  EXPECT_FALSE(
      of(std::make_exception_ptr(RemoteError(502, "upstream_unavailable", ""))).not_delivered);
  EXPECT_FALSE(of(std::make_exception_ptr(RemoteError(429, "rate_limited", ""))).not_delivered);
  EXPECT_FALSE(of(std::make_exception_ptr(
                      http::HttpError(http::Status::service_unavailable, "dependency_refused", "")))
                   .not_delivered);
  // A handler that let a refused connect of its own call escape ran: a retry of the
  // served operation would run it again.
  EXPECT_FALSE(classify_served_fault(std::make_exception_ptr(http::ClientError(
                                         ClientErrc::connect_failed, "its own upstream")))
                   .not_delivered);
  EXPECT_FALSE(classify_served_fault(std::make_exception_ptr(RemoteError(503, "local_unavailable",
                                                                         "its own upstream", true)))
                   .not_delivered);
  // qos/'s own classifier knows no HTTP: it never says so.
  EXPECT_FALSE(classify_fault(std::make_exception_ptr(
                                  boost::system::system_error(asio::error::connection_refused)))
                   .not_delivered);
}

// A run of `thrower` through a retry of 3 attempts as a POST (not idempotent).
Ran run_post(const Thrower& thrower, RetryOptions options = {}) {
  const Chain<int> chain(
      {std::make_shared<RetryInterceptor>(
          RetryConfig{.max_attempts = 3, .base_backoff = 0ms, .max_backoff = 0ms},
          std::move(options))},
      {.classify = classify_service_fault});
  asio::io_context io;
  Ran ran;
  try {
    run(io, chain.execute([&] { return throwing(thrower, &ran.calls); }, {.idempotent = false}));
  } catch (...) {
  }
  return ran;
}

// Envoy's connect-failure / reset-before-request retry: a request that never reached the
// callee is sent again whatever its method; one that may have been processed only when
// idempotent. A POST with a retry used to be sent once whatever its failure.
TEST(NotDelivered, IsRetriedForAnyMethodAndALostAnswerOnlyWhenIdempotent) {
  using http::ClientErrc;
  const auto client_error = [](ClientErrc errc) -> Thrower {
    return [errc] { throw http::ClientError(errc, "upstream"); };
  };
  EXPECT_EQ(run_post(client_error(ClientErrc::connect_failed)).calls, 3);
  EXPECT_EQ(run_post(client_error(ClientErrc::connect_timeout)).calls, 3);
  EXPECT_EQ(run_post(client_error(ClientErrc::tls_handshake)).calls, 3);
  EXPECT_EQ(run_post([] { throw RemoteError(503, "local_unavailable", "", true); }).calls, 3);
  // Sent: never again for a POST.
  EXPECT_EQ(run_post(client_error(ClientErrc::outcome_unknown)).calls, 1);
  EXPECT_EQ(run_post(client_error(ClientErrc::connection_closed)).calls, 1);
  EXPECT_EQ(run_post([] { throw RemoteError(503, "flaky", ""); }).calls, 1);
  // Not delivered, but still within the class's own rule: a refusal is never retried.
  EXPECT_EQ(run_post(client_error(ClientErrc::discovery_unavailable)).calls, 1);
  // Still counted against the budget: a spent one refuses the retry.
  auto spent =
      std::make_shared<RetryBudget>(RetryBudgetConfig{.ratio = 0.0, .min_retries_per_second = 0});
  EXPECT_EQ(run_post(client_error(ClientErrc::connect_failed), {.budget = spent}).calls, 1);
  auto one = std::make_shared<RetryBudget>(
      RetryBudgetConfig{.ratio = 0.0, .min_retries_per_second = 1, .ttl = std::chrono::seconds(1)});
  EXPECT_EQ(run_post(client_error(ClientErrc::connect_failed), {.budget = one}).calls, 2);
}

// Was: a callee's 429 had no reason at all, so no fallback filtered by reasons could
// answer it. It is callee_rejected, and rate_limited too when its answer says so.
TEST(FaultSemantics, AFallbacksReasonsNameACalleesRefusal) {
  const ChainOptions options{.classify = classify_service_fault};
  const auto answered = [&options](std::vector<Reason> reasons, const Thrower& thrower) {
    const Chain<int> chain({std::make_shared<Fallback<int>>(
                               Fallback<int>::value(-1),
                               FallbackFilter{.errors = false, .reasons = std::move(reasons)})},
                           options);
    return run_failing(chain, thrower).value;
  };
  const Thrower rate_limited = [] { throw RemoteError(429, "rate_limited", "quota"); };
  const Thrower quota_exceeded = [] { throw RemoteError(429, "quota_exceeded", "quota"); };
  const Thrower bare = [] { throw RemoteError(429, "http_429", ""); };
  EXPECT_TRUE(answered({Reason::rate_limited}, rate_limited));
  EXPECT_TRUE(answered({Reason::callee_rejected}, rate_limited));
  EXPECT_FALSE(answered({Reason::rate_limited}, quota_exceeded));
  EXPECT_TRUE(answered({Reason::callee_rejected}, quota_exceeded));
  EXPECT_TRUE(answered({Reason::callee_rejected}, bare));
  EXPECT_FALSE(answered({Reason::circuit_open}, rate_limited));
  // Still no reason of this side's: nothing counts or logs it as a policy's refusal here.
  const Fault fault = Fault::from(std::make_exception_ptr(RemoteError(429, "rate_limited", "")),
                                  classify_service_fault);
  EXPECT_FALSE(fault.reason.has_value());
  ASSERT_TRUE(fault.callee_reason.has_value());
  EXPECT_EQ(to_string(*fault.callee_reason), "rate_limited");
  EXPECT_EQ(to_string(callee_refusal_reason("circuit_open")), "callee_rejected")
      << "only a reason a 429 carries is taken from the callee's words";
}

}  // namespace
}  // namespace coromesh::qos
