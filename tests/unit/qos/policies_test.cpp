#include "coromesh/qos/policies.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "coromesh/qos/operation_qos.hpp"
#include "coromesh/qos/policy_runtime.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// --- compile-time checks (a failure here fails the build) -------------------------------

constexpr auto kDesignExample = server(timeout{100ms}, rate_limit{5000, 1s},
                                       circuit_breaker{.failure_rate = 0.5, .window = 100}, log{});
static_assert(validate_declaration(kDesignExample).empty());
static_assert(validate_declaration(server(bulkhead{.max_concurrent = 0})) ==
              "bulkhead: a zero-capacity bulkhead (max_concurrent 0) admits nothing");
static_assert(validate_declaration(server(rate_limit{.permits = 0})) ==
              "token bucket: a rate of 0 permits admits nothing");
static_assert(validate_declaration(server(timeout{1s}, timeout{2s})) ==
              "a policy kind is declared twice in one QoS list");
// Five attempts with backoffs of 50+100+200+400 ms cannot fit in 500 ms overall.
static_assert(
    !validate_declaration(client(timeout{.per_attempt = 100ms, .overall = 500ms},
                                 retry{.max_attempts = 5, .base_backoff = 50ms, .max_backoff = 1s}))
         .empty());
// A timeout weighted outside the retry bounds all attempts with its per-attempt value.
static_assert(!validate_declaration(
                   client(timeout{.per_attempt = 100ms, .weight = 1},
                          retry{.max_attempts = 3, .base_backoff = 80ms, .max_backoff = 80ms}))
                   .empty());
static_assert(validate_declaration(client(timeout{100ms}, retry{})).empty());
static_assert(validate_declaration(server(fallback{-1})).empty());
static_assert(validate_declaration(server(rate_limit{.algorithm = RateAlgorithm::leaky_bucket,
                                                     .shape = true}))
                  .empty());
static_assert(!validate_declaration(server(rate_limit{.shape = true})).empty());
static_assert(!validate_declaration(server(fallback<int>{
                                        .handler = 0, .on_rejections = false, .on_errors = false}))
                   .empty());

TEST(Policies, DefaultsAreTheDocumentedOnes) {
  EXPECT_EQ(timeout{}.per_attempt, 1s);
  EXPECT_EQ(retry{}.max_attempts, 3U);
  EXPECT_EQ(retry{}.base_backoff, 25ms);
  EXPECT_TRUE(retry{}.retry_on.contains(503));
  EXPECT_FALSE(retry{}.retry_on.contains(500));
  EXPECT_EQ(circuit_breaker{}.window, 100U);
  EXPECT_EQ(circuit_breaker{}.open_for, 60s);
  EXPECT_EQ(rate_limit{}.effective_burst(), 50U);
  EXPECT_EQ(bulkhead{}.max_concurrent, 25U);
  EXPECT_EQ(adaptive_limit{}.initial_limit, 20U);
}

// A status no retry acts on is refused where it is written (it was accepted and ignored):
// a callee's 429 is its refusal, a 4xx the caller's error; neither is ever retried.
TEST(Policies, RetryOnRefusesStatusesThatAreNeverRetried) {
  const std::string_view on_429 =
      validate_declaration(client(timeout{1s}, retry{.retry_on = {429, 502, 503, 504}}));
  EXPECT_NE(on_429.find("retry_on lists 429, which is never retried"), std::string_view::npos)
      << on_429;
  const std::string_view on_404 = validate_declaration(client(retry{.retry_on = {404, 503}}));
  EXPECT_NE(on_404.find("retry_on may list only 5xx statuses"), std::string_view::npos) << on_404;
  EXPECT_EQ(validate_declaration(client(retry{.retry_on = {500, 502, 503, 504}})), "");
  // A set built at run time is checked where the service builds its chain.
  PolicySet set;
  set.retry_policy = retry{.retry_on = {429}};
  EXPECT_THROW(build_policies(set, nullptr, {}), std::invalid_argument);
  EXPECT_THROW(RetryPolicy(RetryConfig{.retryable_statuses = {429}}), std::invalid_argument);
}

TEST(Policies, ToPolicySetKeepsEveryKindButFallback) {
  constexpr auto set = to_policy_set(server(timeout{100ms}, fallback{1}, bulkhead{4}));
  ASSERT_TRUE(set.timeout_policy);
  EXPECT_EQ(set.timeout_policy->per_attempt, 100ms);
  ASSERT_TRUE(set.bulkhead_policy);
  EXPECT_EQ(set.bulkhead_policy->max_concurrent, 4U);
  EXPECT_FALSE(set.retry_policy);
}

TEST(Policies, SummaryListsEveryKindInChainOrder) {
  const auto set = to_policy_set(kDesignExample);
  EXPECT_EQ(summarize(set),
            "log circuit_breaker=50%/100,min=100,open=1m rate_limit=5000/1s timeout=100ms");
  EXPECT_EQ(summarize(PolicySet{}), "");
}

// Every summarized field, derived from the kinds' descriptions.
TEST(Policies, SummaryShowsEachKindsHeadlineFields) {
  const auto set = to_policy_set(
      server(retry{}, circuit_breaker{.window_type = WindowType::time_based},
             rate_limit{.permits = 7, .algorithm = RateAlgorithm::leaky_bucket, .shape = true},
             timeout{.per_attempt = 100ms, .overall = 1s},
             bulkhead{.max_concurrent = 4, .max_queue = 2, .max_wait = 10ms}, adaptive_limit{},
             metrics{}));
  EXPECT_EQ(summarize(set),
            "retry=3x25ms+budget circuit_breaker=50%/1m,min=100,open=1m "
            "rate_limit=7/1s-leaky_bucket+shaped "
            "timeout=100ms/1s bulkhead=4+2 adaptive_limit=1..200");
}

// Was: both read `circuit_breaker=50%/10` in Meta, though one opens after 5 calls for 5s
// and the other after 10 calls for 10m.
TEST(Policies, SummaryTellsBreakersApartByMinimumCallsAndOpenTime) {
  const auto quick = to_policy_set(server(
      circuit_breaker{.failure_rate = 0.5, .window = 10, .minimum_calls = 5, .open_for = 5s}));
  const auto patient = to_policy_set(server(
      circuit_breaker{.failure_rate = 0.5, .window = 10, .minimum_calls = 10, .open_for = 10min}));
  EXPECT_EQ(summarize(quick), "circuit_breaker=50%/10,min=5,open=5s");
  EXPECT_EQ(summarize(patient), "circuit_breaker=50%/10,min=10,open=10m");
}

// An override reads every field of the description, including ones the old hand-written
// reader missed (retry_transport_errors).
TEST(Overrides, EveryDescribedFieldIsReadable) {
  const auto set = apply_override(PolicySet{},
                                  R"({"retry": {"retry_transport_errors": false, "jitter": "equal"},
          "circuit_breaker": {"window_type": "time", "window_duration": "30s"}})");
  ASSERT_TRUE(set.retry_policy);
  EXPECT_FALSE(set.retry_policy->retry_transport_errors);
  EXPECT_EQ(set.retry_policy->jitter, Jitter::equal);
  ASSERT_TRUE(set.breaker_policy);
  EXPECT_EQ(set.breaker_policy->window_type, WindowType::time_based);
  EXPECT_EQ(set.breaker_policy->window_duration, 30s);
}

TEST(Policies, BuildOrdersTheChainByWeight) {
  const auto set = to_policy_set(server(bulkhead{}, timeout{1s}, retry{}, circuit_breaker{},
                                        rate_limit{}, adaptive_limit{}, log{}));
  OperationQos<int> op("op", set, make_fallback<int>(fallback{0}), {}, {});
  EXPECT_EQ(op.order(),
            (std::vector<std::string>{"log", "fallback", "retry", "circuit_breaker", "rate_limit",
                                      "timeout", "bulkhead", "adaptive_limit"}));
}

TEST(Policies, BuildRefusesASetThatCannotWork) {
  PolicySet set;
  set.bulkhead_policy = bulkhead{.max_concurrent = 0};
  EXPECT_THROW(build_policies(set, nullptr, {}), std::invalid_argument);
}

// --- overrides ---------------------------------------------------------------------------

std::string refusal(const PolicySet& base, std::string_view document) {
  try {
    (void)apply_override(base, document);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "accepted";
}

// retry_on is the declaration's: an override naming it (429, most likely) is refused with
// the reason, and the running policy stays, as with every refused override. It said
// "unknown field", as if retry had no such field.
TEST(Overrides, RetryOnIsRefusedWithTheReason) {
  const auto base = to_policy_set(client(timeout{1s}, retry{}));
  EXPECT_EQ(refusal(base, R"({"retry": {"retry_on": [429, 503]}})"),
            "retry.retry_on: only the declaration sets it (a KV override cannot), and it lists "
            "5xx statuses only: a callee's 429 is its refusal and never retried");
}

TEST(Overrides, ChangeOnlyTheFieldsGiven) {
  const auto base = to_policy_set(kDesignExample);
  const auto set = apply_override(base, R"({"rate_limit": {"permits": 10, "period": "2s"}})");
  ASSERT_TRUE(set.rate_limit_policy);
  EXPECT_EQ(set.rate_limit_policy->permits, 10U);
  EXPECT_EQ(set.rate_limit_policy->period, 2s);
  EXPECT_EQ(set.timeout_policy, base.timeout_policy);
  EXPECT_EQ(set.breaker_policy, base.breaker_policy);
}

TEST(Overrides, NullSwitchesAKindOffAndAnObjectAddsOne) {
  const auto base = to_policy_set(kDesignExample);
  const auto set = apply_override(base, R"({"timeout": null, "bulkhead": {"max_concurrent": 2}})");
  EXPECT_FALSE(set.timeout_policy);
  ASSERT_TRUE(set.bulkhead_policy);
  EXPECT_EQ(set.bulkhead_policy->max_concurrent, 2U);
}

// Found by fuzz.qos_override: a key holding a NUL made the refusal's what() empty (the
// message was cut at the NUL), and a newline in a key would have forged a log line.
TEST(Overrides, UnknownNamesAreQuotedEscapedAndClipped) {
  const auto base = to_policy_set(kDesignExample);
  using namespace std::string_literals;
  EXPECT_EQ(refusal(base, "{\"\\u0000circuit_breaker\": {}}"s),
            "unknown policy kind '\\x00circuit_breaker'");
  EXPECT_EQ(refusal(base, R"({"rate_limit": {"a\nlevel=error": 1}})"),
            "rate_limit: unknown field 'a\\nlevel=error'");
  const auto long_name = refusal(base, "{\"" + std::string(100'000, 'k') + "\": {}}");
  EXPECT_LT(long_name.size(), 200U) << long_name.substr(0, 200);
}

TEST(Overrides, BadDocumentsAreRefusedWithTheFieldAtFault) {
  const auto base = to_policy_set(kDesignExample);
  EXPECT_EQ(refusal(base, "{not json"), "not valid JSON: syntax error");
  EXPECT_EQ(refusal(base, "[1,2]"), "expected a JSON object with one member per policy kind");
  EXPECT_EQ(refusal(base, R"({"teleport": {}})"), "unknown policy kind 'teleport'");
  // A declared kind, but code: the refusal says so rather than calling it unknown.
  EXPECT_EQ(refusal(base, R"({"fallback": null})"),
            "fallback: cannot be overridden from Consul KV (it is code in the declaration)");
  EXPECT_EQ(refusal(base, R"({"rate_limit": {"permits": 0}})"),
            "rate_limit: token bucket: a rate of 0 permits admits nothing");
  EXPECT_EQ(refusal(base, R"({"rate_limit": {"permits": -5}})"),
            "rate_limit: permits must be in [0, 1000000000]");
  EXPECT_EQ(refusal(base, R"({"rate_limit": {"permits": "ten"}})"),
            "rate_limit.permits: expected an integer");
  EXPECT_EQ(refusal(base, R"({"rate_limit": {"permitz": 3}})"),
            "rate_limit: unknown field 'permitz'");
  EXPECT_EQ(refusal(base, R"({"timeout": {"per_attempt": 100}})"),
            R"(timeout.per_attempt: expected a duration string such as "250ms")");
  EXPECT_NE(refusal(base, R"({"timeout": {"per_attempt": "soon"}})").find("timeout.per_attempt"),
            std::string::npos);
  EXPECT_EQ(refusal(base, R"({"timeout": {"mode": "maybe"}})"),
            "timeout.mode: expected one of preemptive, deadline");
  EXPECT_EQ(refusal(base, R"({"bulkhead": 3})"),
            "bulkhead: expected an object of fields, or null to switch the policy off");
  // Valid alone, impossible together: checked as a whole.
  EXPECT_NE(refusal(base, R"({"timeout": {"overall": "100ms"},
                             "retry": {"max_attempts": 5, "base_backoff": "50ms",
                                       "max_backoff": "1s"}})"),
            "accepted");
}

// Boost.JSON keeps the last copy of a key given twice, so {"bulkhead": {...3}, "bulkhead":
// {...4}} was applied as 4 without a word, though whoever wrote it (or reviewed it in a
// KV diff) may have read the 3. Ambiguous, so refused, as a request body's duplicate is.
TEST(Overrides, AKindOrAFieldGivenTwiceIsRefused) {
  const auto base = to_policy_set(kDesignExample);
  EXPECT_EQ(
      refusal(base, R"({"bulkhead": {"max_concurrent": 3}, "bulkhead": {"max_concurrent": 4}})"),
      "bulkhead: given more than once");
  EXPECT_EQ(refusal(base, R"({"bulkhead": {"max_concurrent": 3, "max_concurrent": 4}})"),
            "bulkhead.max_concurrent: given more than once");
  EXPECT_EQ(refusal(base, R"({"timeout": null, "timeout": {"per_attempt": "1s"}})"),
            "timeout: given more than once");
}

// --- bounds ------------------------------------------------------------------------------

// The same bounds hold at compile time, in declarations.
static_assert(validate_declaration(server(circuit_breaker{.window = 100'001})) ==
              "circuit_breaker: window must be in [0, 100000] calls");
static_assert(validate_declaration(server(timeout{.per_attempt = std::chrono::hours(25)})) ==
              "timeout: per_attempt must be in [0, 24h]");
static_assert(validate_declaration(client(retry{.max_attempts = 11})) ==
              "retry: max_attempts must be in [0, 10]");

// A value just past one end of a field's range, as override JSON; empty when the field's
// type cannot hold one.
template <class F>
std::string past(const F& field, bool above) {
  using T = typename F::Type;
  if constexpr (std::is_same_v<T, Duration>) {
    return above ? R"("24h1ms")" : R"("-1ms")";
  } else if constexpr (std::is_floating_point_v<T>) {
    return std::to_string(above ? field.max + 1.0 : field.min - 1.0);
  } else {
    return above ? std::to_string(static_cast<long long>(field.max) + 1)
                 : std::to_string(static_cast<long long>(field.min) - 1);
  }
}

template <class P>
void expect_every_bound_refused(const PolicySet& base) {
  constexpr std::string_view kind = Description<P>::kind;
  for_each_field<P>([&](const auto& field) {
    if constexpr (!std::remove_cvref_t<decltype(field)>::is_flag) {
      for (bool above : {true, false}) {
        const std::string document = "{\"" + std::string(kind) + "\": {\"" +
                                     std::string(field.name) + "\": " + past(field, above) + "}}";
        const std::string why = refusal(base, document);
        // A negative duration or count may meet the policy's own check first; either way
        // the message names the kind and the field.
        if (above) {
          EXPECT_EQ(why, field.out_of_range) << document;
        }
        EXPECT_NE(why.find(std::string(field.name)), std::string::npos) << document << " " << why;
        EXPECT_EQ(why.find("[boost"), std::string::npos) << why;
      }
    }
  });
}

TEST(Overrides, EveryFieldOutsideItsBoundsIsRefusedByName) {
  const auto base = to_policy_set(server(timeout{}, retry{}, circuit_breaker{}, rate_limit{},
                                         bulkhead{}, adaptive_limit{}, log{}, metrics{}));
  expect_every_bound_refused<timeout>(base);
  expect_every_bound_refused<retry>(base);
  expect_every_bound_refused<circuit_breaker>(base);
  expect_every_bound_refused<rate_limit>(base);
  expect_every_bound_refused<bulkhead>(base);
  expect_every_bound_refused<adaptive_limit>(base);
  expect_every_bound_refused<log>(base);
  expect_every_bound_refused<metrics>(base);
}

// Was: accepted, and a breaker window of 2^32-1 took the service to 2 GB RSS; durations
// of centuries overflowed the deadline arithmetic.
TEST(Overrides, AbsurdValuesAreRefused) {
  const auto base = to_policy_set(kDesignExample);
  EXPECT_EQ(refusal(base, R"({"circuit_breaker": {"window": 4294967295}})"),
            "circuit_breaker: window must be in [0, 100000] calls");
  EXPECT_EQ(refusal(base, R"({"timeout": {"per_attempt": "876000h"}})"),
            "timeout: per_attempt must be in [0, 24h]");
  EXPECT_EQ(refusal(base, R"({"rate_limit": {"permits": 18446744073709551615}})"),
            "rate_limit: permits must be in [0, 1000000000]");
  EXPECT_EQ(refusal(base, R"({"bulkhead": {"max_queue": 2000000, "max_wait": "1s"}})"),
            "bulkhead: max_queue must be in [0, 1000000]");
  EXPECT_EQ(refusal(base, R"({"retry": {"max_attempts": 1000}})"),
            "retry: max_attempts must be in [0, 10]");
}

// Was: "bulkhead: bulkhead: ..." and Boost source locations in the JSON error.
TEST(Overrides, MessagesNameTheKindOnceAndCarryNoSourceLocation) {
  const auto base = to_policy_set(kDesignExample);
  EXPECT_EQ(refusal(base, R"({"bulkhead": {"max_concurrent": 0}})"),
            "bulkhead: a zero-capacity bulkhead (max_concurrent 0) admits nothing");
  EXPECT_EQ(refusal(base, R"({"circuit_breaker": {"failure_rate": 0}})"),
            "circuit breaker: failure_rate_threshold must be in (0, 1]");
  EXPECT_EQ(refusal(base, R"({"rate_limit": {"permits": 0}})"),
            "rate_limit: token bucket: a rate of 0 permits admits nothing");
  EXPECT_EQ(refusal(base, "{not json"), "not valid JSON: syntax error");
}

// --- OperationQos ------------------------------------------------------------------------

asio::awaitable<int> answer() {
  co_return 7;
}

int run_once(asio::io_context& io, const OperationQos<int>& op) {
  auto future = asio::co_spawn(io, op.execute([] { return answer(); }), asio::use_future);
  io.run();
  io.restart();
  return future.get();
}

TEST(OperationQos, ApplySwapsTheRateLimitAndKeepsTheBreaker) {
  ManualClock clock;
  const auto declared =
      to_policy_set(server(rate_limit{.permits = 1, .period = 1s}, circuit_breaker{}));
  std::vector<std::string> rejections;
  OperationQos<int> op(
      "op", declared, nullptr, BuildOptions{.clock = &clock},
      [&](std::string_view policy, Reason reason) {
        rejections.push_back(std::string(policy) + ":" + std::string(to_string(reason)));
      });
  asio::io_context io;
  EXPECT_EQ(run_once(io, op), 7);
  EXPECT_THROW(run_once(io, op), QosRejected);
  EXPECT_EQ(rejections, std::vector<std::string>{"rate_limit:rate_limited"});

  const auto breaker_before = op.objects()->breaker;
  op.apply(apply_override(op.declared(), R"({"rate_limit": {"permits": 100}})"));
  EXPECT_EQ(op.objects()->breaker, breaker_before);
  EXPECT_EQ(op.current().rate_limit_policy->permits, 100U);
  // The token spent stays spent; the new rate refills from the override on.
  EXPECT_THROW(run_once(io, op), QosRejected);
  clock.advance(20ms);
  EXPECT_EQ(run_once(io, op), 7);
  EXPECT_EQ(run_once(io, op), 7);
  EXPECT_THROW(run_once(io, op), QosRejected);
}

TEST(OperationQos, AFailedApplyKeepsTheRunningPolicies) {
  const auto declared = to_policy_set(server(bulkhead{3}));
  OperationQos<int> op("op", declared, nullptr, {}, {});
  PolicySet bad = declared;
  bad.bulkhead_policy->max_concurrent = 0;
  EXPECT_THROW(op.apply(bad), std::invalid_argument);
  EXPECT_EQ(op.current(), declared);
}

}  // namespace
}  // namespace coromesh::qos

namespace coromesh::qos {
namespace {

TEST(OperationQos, TheOverallTimeoutBoundsTheCallersDeadline) {
  ManualClock clock;
  const auto declared = to_policy_set(client(timeout{.per_attempt = 50ms, .overall = 200ms}));
  OperationQos<int> op("op", declared, nullptr, BuildOptions{.clock = &clock}, {});
  asio::io_context io;
  auto observe = [&](CallOptions options) {
    Duration overall{};
    Duration attempt{};
    typename Chain<int>::InvocationCall call =
        [&](const Invocation& invocation) -> asio::awaitable<int> {
      overall = invocation.overall_deadline().remaining(clock);
      attempt = invocation.deadline().remaining(clock);
      co_return 1;
    };
    auto future = asio::co_spawn(io, op.execute_with(call, options), asio::use_future);
    io.run();
    io.restart();
    future.get();
    return std::pair{overall, attempt};
  };
  // No caller deadline: the overall timeout is the deadline, the attempt gets 50 ms of it.
  auto [overall, attempt] = observe({});
  EXPECT_EQ(overall, 200ms);
  EXPECT_EQ(attempt, 50ms);
  // A caller deadline shorter than the overall timeout wins.
  std::tie(overall, attempt) = observe({.deadline = Deadline::after(30ms, clock)});
  EXPECT_EQ(overall, 30ms);
  EXPECT_EQ(attempt, 30ms);
}

// Only an operation's declaration may let retries send a non-idempotent call (a POST)
// again: qos::retry{.non_idempotent = true}, which the compiler checks against the
// method. A live override turning idempotent_only off was accepted, and from then on a
// POST that lost its connection after being sent (it may have taken effect) went out
// again, behind the declaration's back.
TEST(Overrides, CannotLetRetriesSendANonIdempotentCallAgain) {
  const auto declared =
      to_policy_set(client(retry{.base_backoff = 1ms, .max_backoff = 1ms, .budget = false}));
  EXPECT_NE(refusal(declared, R"({"retry": {"idempotent_only": false}})"), "accepted");
  EXPECT_NE(refusal(PolicySet{}, R"({"retry": {"max_attempts": 3, "idempotent_only": false}})"),
            "accepted");

  OperationQos<int> op("pay", declared, nullptr, {}, {});
  try {
    op.apply(apply_override(declared, R"({"retry": {"idempotent_only": false}})"));
  } catch (const std::invalid_argument&) {
  }
  int sent = 0;
  typename Chain<int>::Call post = [&]() -> asio::awaitable<int> {
    ++sent;
    throw boost::system::system_error(asio::error::connection_reset);
    co_return 0;
  };
  asio::io_context io;
  auto future = asio::co_spawn(io, op.execute(post, {.idempotent = false}), asio::use_future);
  io.run();
  EXPECT_THROW(future.get(), boost::system::system_error);
  EXPECT_EQ(sent, 1) << "a non-idempotent call was sent again";
}

// Where the declaration lifted it, an override may keep it lifted or change the rest.
TEST(Overrides, KeepTheDeclaredPermissionToRetryANonIdempotentCall) {
  const auto declared = to_policy_set(client(retry{.non_idempotent = true}));
  EXPECT_EQ(refusal(declared, R"({"retry": {"idempotent_only": false, "max_attempts": 2}})"),
            "accepted");
  const auto any_method = to_policy_set(client(retry{.idempotent_only = false}));
  EXPECT_EQ(refusal(any_method, R"({"retry": {"max_attempts": 2}})"), "accepted");
}

}  // namespace
}  // namespace coromesh::qos
