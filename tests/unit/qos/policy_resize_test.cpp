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
