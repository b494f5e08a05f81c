#pragma once

// Call results and durations reported to a CallObserver, as a chain interceptor.

#include <boost/asio/awaitable.hpp>
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
  enum class Result : std::uint8_t { ok, error, rejected };
  virtual ~CallObserver() = default;
  virtual void observe(Result result, Duration elapsed) noexcept = 0;
};

// Reports every call's result and duration to a CallObserver.
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
