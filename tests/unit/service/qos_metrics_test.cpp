// QosMetrics counts every call exactly when many io threads report at once: more
// threads than owned shards, so both the owned (plain store) and the shared (fetch_add)
// paths count (qos::owned_shard()); and which result a call's fault is counted as.

#include "coromesh/service/qos_metrics.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coromesh/http/client.hpp"
#include "coromesh/metrics/registry.hpp"
#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/metrics_interceptor.hpp"
#include "coromesh/qos/thread_shard.hpp"
#include "coromesh/qos/timeout_interceptor.hpp"
#include "coromesh/service/fault_classifier.hpp"

namespace coromesh {
namespace {

using namespace std::chrono_literals;
using Result = qos::CallObserver::Result;

// The value of the exposition line that starts with `series` (name and labels).
std::string value_of(const std::string& text, const std::string& series) {
  const auto at = text.find(series + " ");
  if (at == std::string::npos) {
    return "<no " + series + ">";
  }
  const auto from = at + series.size() + 1;
  return text.substr(from, text.find('\n', from) - from);
}

TEST(QosMetrics, CountsEveryCallFromManyThreads) {
  metrics::MetricsRegistry registry;
  QosMetrics qos_metrics(registry);
  const auto observer = qos_metrics.observer("add", "server");
  const auto reject = qos_metrics.rejection_hook("add", "server");
  constexpr int kThreads = static_cast<int>(qos::kOwnedShards) + 4;
  constexpr int kEach = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&observer, &reject] {
      for (int i = 0; i < kEach; ++i) {
        observer->observe(Result::ok, 2ms);
        observer->observe(Result::error, 2ms);
        if (i % 4 == 0) {
          observer->observe(Result::caller_error, 2ms);
        }
        if (i % 10 == 0) {
          reject("bulkhead", qos::Reason::bulkhead_full);
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  const std::string text = registry.render();
  const std::string labels_ok = R"({operation="add",result="ok",side="server"})";
  const std::string labels_error = R"({operation="add",result="error",side="server"})";
  const std::string labels_rejected = R"({operation="add",result="rejected",side="server"})";
  const std::string labels_caller = R"({operation="add",result="caller_error",side="server"})";
  EXPECT_EQ(value_of(text, "coromesh_qos_calls_total" + labels_ok),
            std::to_string(kThreads * kEach));
  EXPECT_EQ(value_of(text, "coromesh_qos_calls_total" + labels_error),
            std::to_string(kThreads * kEach));
  EXPECT_EQ(value_of(text, "coromesh_qos_calls_total" + labels_rejected),
            std::to_string(kThreads * kEach / 10));
  EXPECT_EQ(value_of(text, "coromesh_qos_calls_total" + labels_caller),
            std::to_string(kThreads * kEach / 4));
  EXPECT_EQ(
      value_of(text, R"(coromesh_qos_call_duration_seconds_count{operation="add",side="server"})"),
      std::to_string(2 * kThreads * kEach + kThreads * kEach / 4));
}

// A call that never left because Consul had not answered yet is a refusal in the call
// metrics, not an error of the callee (fault_classifier.hpp); a refused connect is an error.
// The rejections of one operation side live in a small fixed table; a side whose custom
// interceptors invent more (policy, reason) pairs than it holds counts the rest under
// policy="other", whatever their reason: every rejection counted, never past the table.
TEST(QosMetrics, RejectionsPastTheTableCountUnderOtherWhateverTheirReason) {
  metrics::MetricsRegistry registry;
  QosMetrics qos_metrics(registry);
  const auto reject = qos_metrics.rejection_hook("add", "server");
  constexpr int kPolicies = 40;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kPolicies; ++i) {
      for (auto reason : {qos::Reason::rate_limited, qos::Reason::circuit_open}) {
        reject("policy" + std::to_string(i), reason);
      }
    }
  }
  const std::string text = registry.render();
  double counted = 0;
  int series = 0;
  for (std::size_t at = text.find("\ncoromesh_qos_rejections_total{"); at != std::string::npos;
       at = text.find("\ncoromesh_qos_rejections_total{", at + 1)) {
    const auto end = text.find('\n', at + 1);
    const auto line = text.substr(at + 1, end - at - 1);
    counted += std::stod(line.substr(line.rfind(' ') + 1));
    ++series;
  }
  EXPECT_EQ(counted, 2.0 * kPolicies * 2) << text;
  EXPECT_LE(series, 32) << text;
  EXPECT_NE(text.find(R"(coromesh_qos_rejections_total{operation="add",policy="other")"),
            std::string::npos)
      << text;
}

TEST(QosMetrics, ACallDiscoveryCouldNotPlaceIsRejectedNotAnError) {
  metrics::MetricsRegistry registry;
  QosMetrics qos_metrics(registry);
  const qos::Chain<int> chain(
      {std::make_shared<qos::MetricsInterceptor>(qos_metrics.observer("add", "client"))},
      {.classify = classify_service_fault});
  boost::asio::io_context io;
  for (const auto code :
       {http::ClientErrc::discovery_unavailable, http::ClientErrc::connect_failed}) {
    const qos::Chain<int>::Call call = [code]() -> boost::asio::awaitable<int> {
      throw http::ClientError(code, "add-svc");
      co_return 0;
    };
    auto future = boost::asio::co_spawn(io, chain.execute(call), boost::asio::use_future);
    io.run();
    io.restart();
    EXPECT_THROW(future.get(), http::ClientError);
  }
  const std::string text = registry.render();
  EXPECT_EQ(
      value_of(text,
               R"(coromesh_qos_calls_total{operation="add",result="rejected",side="client"})"),
      "1");
  EXPECT_EQ(
      value_of(text, R"(coromesh_qos_calls_total{operation="add",result="error",side="client"})"),
      "1");
}

// Runs one call of `chain` on a fresh io_context; returns how it failed (null: it did not).
std::exception_ptr failure_of(const qos::Chain<int>& chain, const qos::Chain<int>::Call& call,
                              qos::CallOptions options = {}) {
  boost::asio::io_context io;
  auto future = boost::asio::co_spawn(io, chain.execute(call, options), boost::asio::use_future);
  io.run();
  try {
    future.get();
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

// coromesh_qos_calls_total of operation "add" for `result` and `side`.
std::string calls_of(const std::string& text, const std::string& result, const std::string& side) {
  return value_of(text, R"(coromesh_qos_calls_total{operation="add",result=")" + result +
                            R"(",side=")" + side + R"("})");
}

// A call its caller gave up (a server drain cutting a request off shows to the handler as
// operation_aborted) is nobody's failure: counted result="cancelled", not as an error.
TEST(QosMetrics, ACallItsCallerCancelledIsCancelledNotAnError) {
  metrics::MetricsRegistry registry;
  QosMetrics qos_metrics(registry);
  const qos::Chain<int> chain(
      {std::make_shared<qos::MetricsInterceptor>(qos_metrics.observer("add", "server"))},
      {.classify = classify_served_fault});
  EXPECT_TRUE(failure_of(chain, []() -> boost::asio::awaitable<int> {
    throw boost::system::system_error(boost::asio::error::operation_aborted);
    co_return 0;
  }));
  const std::string text = registry.render();
  EXPECT_EQ(calls_of(text, "cancelled", "server"), "1");
  EXPECT_EQ(calls_of(text, "error", "server"), "0");
}

// Was: a refusal by a policy inside the metrics interceptor (any weight puts it there,
// e.g. metrics{.weight = 50} to time whole calls) was counted twice as result="rejected":
// once by the rejection hook, once by the observer that saw it come back.
TEST(QosMetrics, ARefusalInsideTheMetricsInterceptorIsCountedOnce) {
  metrics::MetricsRegistry registry;
  QosMetrics qos_metrics(registry);
  qos::Chain<int> chain(
      {std::make_shared<qos::MetricsInterceptor>(qos_metrics.observer("add", "client"), 50),
       std::make_shared<qos::TimeoutInterceptor>(1s)},
      {.classify = classify_service_fault});
  chain.on_rejection(qos_metrics.rejection_hook("add", "client"));
  ASSERT_EQ(chain.order(), (std::vector<std::string>{"metrics", "timeout"}));
  const qos::CallOptions spent{.deadline = qos::Deadline::after(0ms)};
  EXPECT_TRUE(failure_of(
      chain, []() -> boost::asio::awaitable<int> { co_return 1; }, spent));
  const std::string text = registry.render();
  EXPECT_EQ(calls_of(text, "rejected", "client"), "1");
  EXPECT_EQ(value_of(text, R"(coromesh_qos_rejections_total{operation="add",policy="timeout",)"
                           R"(reason="deadline_exceeded",side="client"})"),
            "1");
}

}  // namespace
}  // namespace coromesh
