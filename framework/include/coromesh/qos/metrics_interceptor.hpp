#pragma once

// Call results and durations reported to a CallObserver, as a chain interceptor.

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "coromesh/qos/chain.hpp"

namespace coromesh::qos {

// Where MetricsInterceptor reports each call (the metrics module implements it with
// Prometheus families; qos/ itself knows no metrics library). Called on io threads,
// concurrently.
class CallObserver {
 public:
  // ok: a value; error: a fault of the callee, the caller (4xx) or the transport, or a
  // timeout; rejected: a refusal (Fault::refused); cancelled: the caller went away (a
  // server drain cutting a request off, a caller cancelling its call) — nobody's failure.
  enum class Result : std::uint8_t { ok, error, rejected, cancelled };
  static constexpr std::size_t kResults = 4;
  // The `result` label of each Result, by its value.
  static constexpr const char* kResultNames[kResults] = {"ok", "error", "rejected", "cancelled"};
  virtual ~CallObserver() = default;
  virtual void observe(Result result, Duration elapsed) noexcept = 0;
};

// Reports every call's result and duration to a CallObserver, except a refusal the
// chain's rejection hook was told of (Invocation::notified): with the default weights none
// reaches it, and one that does (a policy given a weight inside this one) was counted
// there.
class MetricsInterceptor final : public SynchronousInterceptor {
 public:
  explicit MetricsInterceptor(std::shared_ptr<CallObserver> observer,
                              std::optional<int> weight = std::nullopt,
                              std::string name = "metrics");
  void on_request(Invocation&) override {}
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;

 private:
  std::shared_ptr<CallObserver> observer_;
};

}  // namespace coromesh::qos
