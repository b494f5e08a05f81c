#pragma once

// The rate limiters (rate_limiter.hpp) as a chain interceptor.

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/rate_limiter.hpp"

namespace coromesh::qos {

// try_acquire() on a token or leaky bucket; rejected with rate_limited.
//
// With a leaky bucket and `shape`, it is the seed's queue drained at a fixed rate: an
// admitted call waits its turn (LeakyBucket::try_schedule) on an asio timer so calls
// leave at exactly the bucket's rate, a full bucket rejects, and a call whose turn would
// come after its deadline is rejected with deadline_exceeded at once instead of waiting
// (taking no turn). A call cancelled or destroyed while it waits gives its turn back.
class RateLimitInterceptor final : public SynchronousInterceptor {
 public:
  explicit RateLimitInterceptor(std::shared_ptr<TokenBucket> bucket,
                                std::optional<int> weight = std::nullopt,
                                std::string name = "rate_limit");
  explicit RateLimitInterceptor(std::shared_ptr<LeakyBucket> bucket,
                                std::optional<int> weight = std::nullopt,
                                std::string name = "rate_limit", bool shape = false);
  bool synchronous() const noexcept override { return !shape_; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation&, const Outcome&) noexcept override {}
  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override;

 private:
  std::variant<std::shared_ptr<TokenBucket>, std::shared_ptr<LeakyBucket>> bucket_;
  bool shape_ = false;
};

}  // namespace coromesh::qos
