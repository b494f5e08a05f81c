#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "coromesh/qos/operation_qos.hpp"
#include "coromesh/qos/policy_runtime.hpp"

// A live override that changes a bulkhead's or an adaptive limit's declaration resizes the
// running object in place: the calls already in flight keep counting against it, so the
// new limit holds from the moment the override is applied.
namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Calls that run until the test opens their gate, on one io_context; counts how many run
// at once and the most that ever did.
class HeldCalls {
 public:
  struct Result {
    bool done = false;
    std::optional<Reason> rejected;  // set when the chain refused the call
  };

  explicit HeldCalls(const OperationQos<int>& op) : op_(op) {}
  HeldCalls(const HeldCalls&) = delete;
  HeldCalls& operator=(const HeldCalls&) = delete;
  ~HeldCalls() { finish(); }

  // Starts one call and runs the io_context until it is running or refused.
  std::shared_ptr<Result> start() {
    auto result = std::make_shared<Result>();
    auto call = [this]() -> asio::awaitable<int> {
      auto gate = std::make_shared<asio::steady_timer>(io_, asio::steady_timer::time_point::max());
      gates_.push_back(gate);
      peak_ = std::max(peak_, ++running_);
      (void)co_await gate->async_wait(asio::as_tuple(asio::use_awaitable));
      --running_;
      co_return 1;
    };
    asio::co_spawn(io_, op_.execute(call), [result](std::exception_ptr e, int) {
      result->done = true;
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const QosRejected& rejected) {
          result->rejected = rejected.reason();
        } catch (...) {
          ADD_FAILURE() << "a call failed other than by a QoS refusal";
        }
      }
    });
    io_.poll();
    io_.restart();
    return result;
  }

  // Lets the oldest running call end.
  void end_one() {
    auto it = std::find_if(gates_.begin(), gates_.end(), [](const auto& g) { return g; });
    ASSERT_NE(it, gates_.end());
    (*it)->cancel();
    it->reset();
    poll();
  }

  void poll() {
    io_.poll();
    io_.restart();
  }

  // Lets every call end, those admitted meanwhile from a queue too.
  void finish() {
    do {
      for (auto& gate : gates_) {
        if (gate) {
          gate->cancel();
          gate.reset();
        }
      }
      io_.restart();
    } while (io_.run_one() > 0);
    io_.restart();
  }

  int running() const { return running_; }
  int peak() const { return peak_; }

 private:
  const OperationQos<int>& op_;
  asio::io_context io_;
  std::vector<std::shared_ptr<asio::steady_timer>> gates_;
  int running_ = 0;
  int peak_ = 0;
};

// 10 calls in flight under bulkhead{10}; an override to 2 must admit nothing until fewer
// than 2 run. The new limit used to get a fresh bulkhead that did not count them: 12 ran.
TEST(PolicyResize, ShrinkingAFullBulkheadAdmitsNothingUntilBelowTheNewLimit) {
  const auto declared = to_policy_set(server(bulkhead{.max_concurrent = 10}));
  OperationQos<int> op("op", declared, nullptr, {}, {});
  HeldCalls calls(op);
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(calls.start()->rejected) << "call " << i;
  }
  ASSERT_EQ(calls.running(), 10);
  const auto before = op.objects()->bulkhead;

  op.apply(apply_override(declared, R"({"bulkhead": {"max_concurrent": 2}})"));
  for (int i = 0; i < 3; ++i) {
    const auto r = calls.start();
    EXPECT_EQ(r->rejected, Reason::bulkhead_full) << "call " << i << " after the override";
  }
  EXPECT_EQ(calls.running(), 10);
  // The calls in flight end one by one; a new one is refused while 2 or more still run.
  for (int ended = 1; ended <= 8; ++ended) {  // 9 .. 2 still running
    calls.end_one();
    const auto r = calls.start();
    EXPECT_EQ(r->rejected, Reason::bulkhead_full) << "with " << calls.running() << " running";
  }
  calls.end_one();  // 1 running: below the new limit
  EXPECT_FALSE(calls.start()->rejected);
  EXPECT_EQ(calls.start()->rejected, Reason::bulkhead_full);
  EXPECT_EQ(calls.running(), 2);
  EXPECT_LE(calls.peak(), std::max(10, 2));
  EXPECT_EQ(op.objects()->bulkhead.get(), before.get())
      << "the override resizes the running bulkhead";
  EXPECT_EQ(op.objects()->bulkhead->config().max_concurrent, 2U);
}

// Waiters queued on the old declaration are admitted at once when an override grows it.
TEST(PolicyResize, GrowingABulkheadAdmitsQueuedWaitersAtOnce) {
  const auto declared =
      to_policy_set(server(bulkhead{.max_concurrent = 1, .max_queue = 4, .max_wait = 10s}));
  OperationQos<int> op("op", declared, nullptr, {}, {});
  HeldCalls calls(op);
  std::vector<std::shared_ptr<HeldCalls::Result>> started;
  for (int i = 0; i < 4; ++i) {
    started.push_back(calls.start());
  }
  ASSERT_EQ(calls.running(), 1);
  ASSERT_EQ(op.objects()->bulkhead->queued(), 3U);

  op.apply(apply_override(declared, R"({"bulkhead": {"max_concurrent": 3}})"));
  calls.poll();
  EXPECT_EQ(calls.running(), 3) << "two of the three waiters admitted by the override";
  EXPECT_EQ(op.objects()->bulkhead->queued(), 1U);
  calls.end_one();
  EXPECT_EQ(calls.running(), 3) << "the last waiter takes the permit given back";
  EXPECT_EQ(op.objects()->bulkhead->queued(), 0U);
  for (const auto& r : started) {
    EXPECT_FALSE(r->rejected);
  }
}

// An override of another kind, or of the bulkhead's weight alone, keeps the bulkhead and
// the adaptive limit as they are (their counts and learned limit with them).
TEST(PolicyResize, AnOverrideOfSomethingElseKeepsTheObjects) {
  const auto declared =
      to_policy_set(server(rate_limit{.permits = 100}, bulkhead{.max_concurrent = 4},
                           adaptive_limit{.initial_limit = 4, .max_limit = 8}));
  OperationQos<int> op("op", declared, nullptr, {}, {});
  const auto bulkhead_before = op.objects()->bulkhead;
  const auto adaptive_before = op.objects()->adaptive;
  auto held = bulkhead_before->try_acquire();
  ASSERT_TRUE(held);

  op.apply(apply_override(declared, R"({"rate_limit": {"permits": 50}})"));
  EXPECT_EQ(op.objects()->bulkhead.get(), bulkhead_before.get());
  EXPECT_EQ(op.objects()->adaptive.get(), adaptive_before.get());
  op.apply(apply_override(declared, R"({"bulkhead": {"weight": 7}})"));
  EXPECT_EQ(op.objects()->bulkhead.get(), bulkhead_before.get());
  EXPECT_EQ(op.objects()->bulkhead->in_use(), 1U);
  EXPECT_EQ(op.objects()->bulkhead->config().max_concurrent, 4U);
  op.apply(apply_override(declared, R"({"bulkhead": null})"));
  EXPECT_EQ(op.objects()->bulkhead, nullptr);
  op.apply(declared);  // back on: a new bulkhead, the switched-off one is gone
  EXPECT_NE(op.objects()->bulkhead.get(), bulkhead_before.get());
  EXPECT_EQ(op.objects()->bulkhead->in_use(), 0U);
}

// Consul wakes a KV watch on every write of the key, so a tool that puts the same override
// again and again (a cron, a config sync) applies an unchanged set each time. A replaced
// chain is retired, never freed, while the operation lives: one per unchanged write would
// grow the process without bound.
TEST(PolicyResize, AnUnchangedOverrideWrittenAgainPublishesNoNewChain) {
  const auto declared = to_policy_set(server(rate_limit{.permits = 100}, bulkhead{}));
  OperationQos<int> op("op", declared, nullptr, {}, {});
  const auto set = apply_override(declared, R"({"rate_limit": {"permits": 50}})");
  op.apply(set);
  ASSERT_EQ(op.generations(), 2U);
  const auto objects = op.objects();
  for (int i = 0; i < 1000; ++i) {
    op.apply(apply_override(declared, R"({"rate_limit": {"permits": 50}})"));
  }
  EXPECT_EQ(op.generations(), 2U);
  EXPECT_EQ(op.objects().get(), objects.get());
  EXPECT_EQ(op.current(), set);
  op.apply(declared);  // a real change still publishes
  EXPECT_EQ(op.generations(), 3U);
  EXPECT_EQ(op.current(), declared);
}

// The adaptive limit likewise: the calls in flight count against the overridden limit.
TEST(PolicyResize, ShrinkingAnAdaptiveLimitCountsTheCallsInFlight) {
  const auto declared =
      to_policy_set(server(adaptive_limit{.initial_limit = 10, .latency_target = 10s}));
  OperationQos<int> op("op", declared, nullptr, {}, {});
  HeldCalls calls(op);
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(calls.start()->rejected) << "call " << i;
  }
  const auto before = op.objects()->adaptive;

  op.apply(apply_override(declared, R"({"adaptive_limit": {"initial_limit": 2, "max_limit": 2}})"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(calls.start()->rejected, Reason::concurrency_limited) << "call " << i;
  }
  EXPECT_EQ(calls.running(), 10);
  for (int ended = 1; ended <= 8; ++ended) {  // 9 .. 2 still running
    calls.end_one();
    EXPECT_EQ(calls.start()->rejected, Reason::concurrency_limited)
        << "with " << calls.running() << " running";
  }
  calls.end_one();
  EXPECT_FALSE(calls.start()->rejected);
  EXPECT_EQ(calls.start()->rejected, Reason::concurrency_limited);
  EXPECT_LE(calls.peak(), 10);
  EXPECT_EQ(op.objects()->adaptive.get(), before.get());
  EXPECT_EQ(op.objects()->adaptive->limit(), 2U);
}

}  // namespace
}  // namespace coromesh::qos

// The circuit breaker and the rate limiters likewise: an override reconfigures them in
// place, so an OPEN breaker stays open and the tokens a burst spent stay spent.
namespace coromesh::qos {
namespace {

using namespace std::chrono_literals;

PolicySet breaker_declaration() {
  return to_policy_set(server(circuit_breaker{.failure_rate = 0.5,
                                              .window = 4,
                                              .minimum_calls = 4,
                                              .open_for = 10s,
                                              .half_open_calls = 2}));
}

void open_breaker(CircuitBreaker& breaker) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(breaker.acquire());
    breaker.on_failure(1ms);
  }
  ASSERT_EQ(breaker.state(), CircuitBreaker::State::open);
}

// A breaker opened on a failing callee; an operator raises its threshold. The callee is as
// broken as before: the breaker must stay open, not be replaced by a closed one.
TEST(PolicyResize, AnOpenBreakerStaysOpenWhenItsThresholdIsOverridden) {
  ManualClock clock;
  const auto declared = breaker_declaration();
  OperationQos<int> op("op", declared, nullptr, {.clock = &clock}, {});
  const auto before = op.objects()->breaker;
  open_breaker(*before);

  op.apply(apply_override(declared, R"({"circuit_breaker": {"failure_rate": 0.9}})"));
  auto& breaker = *op.objects()->breaker;
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::open);
  const Admission admission = breaker.acquire();
  EXPECT_FALSE(admission) << "an override let a call through to the failing callee";
  if (!admission) {
    EXPECT_EQ(admission.reason(), Reason::circuit_open);
  }
  EXPECT_EQ(op.objects()->breaker.get(), before.get()) << "the override reconfigures it";
  EXPECT_EQ(breaker.config().failure_rate_threshold, 0.9);
  clock.advance(10s);
  EXPECT_TRUE(breaker.acquire()) << "half-open after the wait";
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::half_open);
}

// A new wait in OPEN counts from when the breaker opened, not from the override.
TEST(PolicyResize, AnOverriddenBreakerWaitCountsFromWhenItOpened) {
  ManualClock clock;
  const auto declared = breaker_declaration();
  OperationQos<int> op("op", declared, nullptr, {.clock = &clock}, {});
  open_breaker(*op.objects()->breaker);

  clock.advance(6s);  // 4 s left of the declared 10 s
  op.apply(apply_override(declared, R"({"circuit_breaker": {"open_for": "8s"}})"));
  auto& breaker = *op.objects()->breaker;
  clock.advance(1s);  // 7 s since it opened
  EXPECT_FALSE(breaker.acquire()) << "7 s into a wait of 8 s";
  clock.advance(1s);  // 8 s
  EXPECT_TRUE(breaker.acquire()) << "8 s since it opened: half-open";
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::half_open);

  // Open again, then shorten the wait below the time already waited: half-open at once.
  breaker.on_failure(1ms);
  ASSERT_TRUE(breaker.acquire());
  breaker.on_failure(1ms);
  ASSERT_EQ(breaker.state(), CircuitBreaker::State::open);
  clock.advance(3s);
  op.apply(apply_override(declared, R"({"circuit_breaker": {"open_for": "2s"}})"));
  EXPECT_TRUE(op.objects()->breaker->acquire()) << "3 s waited, 2 s needed";
}

// A retry storm spent the budget; an override of the retry's other fields (its attempts,
// its backoff: what an operator tunes in that very storm) must not refill it, or the
// override itself lets the next burst of retries through.
TEST(PolicyResize, OverridingARetrysBackoffKeepsTheBudgetSpent) {
  ManualClock clock;
  const auto declared = to_policy_set(
      client(retry{.max_attempts = 3, .budget_ratio = 0.0, .budget_min_per_second = 1}));
  OperationQos<int> op("op", declared, nullptr, {.clock = &clock}, {});
  const auto before = op.objects()->budget;
  ASSERT_NE(before, nullptr);
  while (before->try_retry()) {
  }
  ASSERT_EQ(before->available(), 0U);

  op.apply(apply_override(declared, R"({"retry": {"max_attempts": 2, "base_backoff": "50ms"}})"));
  ASSERT_NE(op.objects()->budget, nullptr);
  EXPECT_EQ(op.objects()->budget.get(), before.get());
  EXPECT_EQ(op.objects()->budget->available(), 0U) << "the override refilled the budget";
  EXPECT_FALSE(op.objects()->budget->try_retry());
}

// Was: an override of the budget's own fields (its minimum, ratio or ttl) handed out a
// fresh budget, so the retries of the storm that spent it were forgotten: raising the
// minimum from 1 to 2 retries/s gave 20 retries instead of the 10 left. The retries
// spent (and the requests seen) are carried over with their times: they count against
// the new allowance and leave the window as its new ttl says.
TEST(PolicyResize, OverridingTheBudgetsFieldsCarriesTheRetriesSpentOver) {
  ManualClock clock;
  const auto declared = to_policy_set(client(retry{
      .max_attempts = 3, .budget_ratio = 0.0, .budget_min_per_second = 1, .budget_ttl = 10s}));
  OperationQos<int> op("op", declared, nullptr, {.clock = &clock}, {});
  const auto before = op.objects()->budget;
  ASSERT_NE(before, nullptr);
  while (before->try_retry()) {
  }
  ASSERT_EQ(before->available(), 0U) << "10 retries allowed (1/s over 10 s), all spent";

  clock.advance(2s);
  const auto raised = apply_override(declared, R"({"retry": {"budget_min_per_second": 2}})");
  op.apply(raised);
  ASSERT_NE(op.objects()->budget, nullptr);
  EXPECT_EQ(op.objects()->budget->available(), 10U) << "20 allowed, 10 of them spent";

  // A shorter window keeps the retries made 2 s ago: 10 allowed (2/s over 5 s), 10 spent.
  op.apply(apply_override(raised, R"({"retry": {"budget_ttl": "5s"}})"));
  ASSERT_NE(op.objects()->budget, nullptr);
  EXPECT_EQ(op.objects()->budget->available(), 0U) << "the override refilled the budget";
  EXPECT_FALSE(op.objects()->budget->try_retry());

  // ...until they are older than the new ttl.
  clock.advance(3s + 1ms);
  EXPECT_EQ(op.objects()->budget->available(), 10U);
}

// A burst spent the bucket; an override that raises the rate must not refill it: the new
// rate applies from the override on.
TEST(PolicyResize, OverridingARateLimitKeepsTheTokensSpent) {
  ManualClock clock;
  const auto declared = to_policy_set(server(rate_limit{.permits = 10, .period = 1s}));
  OperationQos<int> op("op", declared, nullptr, {.clock = &clock}, {});
  const auto before = op.objects()->token_bucket;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(before->try_acquire()) << "token " << i;
  }

  op.apply(apply_override(declared, R"({"rate_limit": {"permits": 20}})"));
  auto& bucket = *op.objects()->token_bucket;
  int admitted = 0;
  for (int i = 0; i < 30; ++i) {
    admitted += bucket.try_acquire().is_granted() ? 1 : 0;
  }
  EXPECT_EQ(admitted, 0) << "the override refilled the bucket";
  EXPECT_EQ(op.objects()->token_bucket.get(), before.get());
  clock.advance(100ms);  // 2 tokens at the new rate of 20/s
  EXPECT_TRUE(bucket.try_acquire());
  EXPECT_TRUE(bucket.try_acquire());
  EXPECT_FALSE(bucket.try_acquire());

  // A change of algorithm is a new limiter.
  op.apply(apply_override(declared, R"({"rate_limit": {"algorithm": "leaky_bucket"}})"));
  EXPECT_EQ(op.objects()->token_bucket, nullptr);
  ASSERT_NE(op.objects()->leaky_bucket, nullptr);
}

// The units admitted stay in the bucket: a smaller capacity admits nothing until they leak
// below it at the new rate.
TEST(PolicyResize, OverridingALeakyBucketKeepsItsLevel) {
  ManualClock clock;
  const auto declared = to_policy_set(
      server(rate_limit{.permits = 10, .period = 1s, .algorithm = RateAlgorithm::leaky_bucket}));
  OperationQos<int> op("op", declared, nullptr, {.clock = &clock}, {});
  const auto before = op.objects()->leaky_bucket;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(before->try_acquire()) << "unit " << i;
  }

  op.apply(apply_override(declared, R"({"rate_limit": {"permits": 5}})"));
  auto& bucket = *op.objects()->leaky_bucket;
  EXPECT_EQ(op.objects()->leaky_bucket.get(), before.get());
  EXPECT_DOUBLE_EQ(bucket.level(), 10.0);
  EXPECT_FALSE(bucket.try_acquire()) << "10 admitted, capacity 5";
  clock.advance(1s);  // leaks 5 at the new rate: 5 left, still full
  EXPECT_FALSE(bucket.try_acquire());
  clock.advance(200ms);  // 4 left
  EXPECT_TRUE(bucket.try_acquire());
  EXPECT_FALSE(bucket.try_acquire());
}

}  // namespace
}  // namespace coromesh::qos
