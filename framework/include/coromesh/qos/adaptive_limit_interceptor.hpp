#pragma once

// The adaptive concurrency limit (adaptive_limit.hpp) as a chain interceptor.

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>

#include "coromesh/qos/adaptive_limit.hpp"
#include "coromesh/qos/chain.hpp"

namespace coromesh::qos {

// AdaptiveLimit::acquire() before (concurrency_limited), on_sample(latency, ok) after:
// a fault that counts_against_callee() (fault.hpp; a timeout included) is a drop, the
// others (a caller's error, a cancellation, a local rejection) call release().
class AdaptiveLimitInterceptor final : public SynchronousInterceptor {
 public:
  explicit AdaptiveLimitInterceptor(std::shared_ptr<AdaptiveLimit> limit,
                                    std::optional<int> weight = std::nullopt,
                                    std::string name = "adaptive_limit");
  AdaptiveLimit& limit() const noexcept { return *limit_; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;

 private:
  std::shared_ptr<AdaptiveLimit> limit_;
};

}  // namespace coromesh::qos
