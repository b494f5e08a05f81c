#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "coromesh/qos/reason.hpp"
#include "coromesh/qos/validate.hpp"

namespace coromesh::qos {
namespace {

using namespace std::chrono_literals;

TEST(Reason, NamesAndStatuses) {
  static_assert(to_string(Reason::deadline_exceeded) == "deadline_exceeded");
  static_assert(http_status(Reason::rate_limited) == 429);
  static_assert(http_status(Reason::deadline_exceeded) == 504);
  EXPECT_EQ(to_string(Reason::circuit_open), "circuit_open");
  EXPECT_EQ(to_string(Reason::rate_limited), "rate_limited");
  EXPECT_EQ(to_string(Reason::bulkhead_full), "bulkhead_full");
  EXPECT_EQ(to_string(Reason::concurrency_limited), "concurrency_limited");
  EXPECT_EQ(to_string(Reason::budget_exhausted), "budget_exhausted");
  for (Reason r : {Reason::circuit_open, Reason::bulkhead_full, Reason::concurrency_limited,
                   Reason::budget_exhausted}) {
    EXPECT_EQ(http_status(r), 503U) << to_string(r);
  }
  for (Reason r : kAllReasons) {
    EXPECT_EQ(parse_reason(to_string(r)), r);
  }
  EXPECT_EQ(parse_reason("nope"), std::nullopt);
}

TEST(Reason, AdmissionAndException) {
  constexpr auto ok = Admission::granted();
  constexpr auto no = Admission::rejected(Reason::rate_limited);
  static_assert(ok.is_granted() && !no.is_granted());
  EXPECT_EQ(no.reason(), Reason::rate_limited);
  const QosRejected e("add.rate_limit", Reason::rate_limited);
  EXPECT_EQ(e.policy(), "add.rate_limit");
  EXPECT_EQ(e.reason(), Reason::rate_limited);
  EXPECT_EQ(e.http_status(), 429U);
  EXPECT_STREQ(e.what(), "qos policy 'add.rate_limit' rejected the call: rate_limited");
}

// The declaration checks are usable at compile time...
static_assert(validate(BulkheadConfig{}).empty());
static_assert(validate(BulkheadConfig{.max_concurrent = 0}) ==
              "bulkhead: a zero-capacity bulkhead (max_concurrent 0) admits nothing");
static_assert(!validate(TokenBucketConfig{.permits = 0}).empty());
static_assert(!validate(LeakyBucketConfig{.rate = 0}).empty());
static_assert(validate(RetryConfig{}, 100ms).empty());
static_assert(!validate(RetryConfig{.max_attempts = 5}, 100ms).empty());
static_assert(validate(AdaptiveLimitConfig{}).empty());
static_assert(validate(CircuitBreakerConfig{}).empty());

// ...and at start-up, with the policy's name in the message.
TEST(Validate, CheckThrowsWithAClearMessage) {
  EXPECT_NO_THROW(check(BulkheadConfig{}, "add.bulkhead"));
  try {
    check(TokenBucketConfig{.permits = 0}, "add.rate_limit");
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "add.rate_limit: token bucket: a rate of 0 permits admits nothing");
  }
  EXPECT_THROW(check(BulkheadConfig{.max_concurrent = 0}, "b"), std::invalid_argument);
  EXPECT_THROW(check(AdaptiveLimitConfig{.max_limit = 0}, "a"), std::invalid_argument);
  EXPECT_THROW(check(RetryBudgetConfig{.ttl = 0s}, "r"), std::invalid_argument);
  EXPECT_THROW(check(RetryConfig{.max_attempts = 4}, 100ms, 0ms, "r"), std::invalid_argument);
}

}  // namespace
}  // namespace coromesh::qos
