#pragma once

// The bulkhead (bulkhead.hpp) as a chain interceptor.

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>

#include "coromesh/qos/bulkhead.hpp"
#include "coromesh/qos/chain.hpp"

namespace coromesh::qos {

// Holds a Bulkhead slot around the rest of the chain; rejected with bulkhead_full.
// Without a wait queue it is synchronous (try_enter / leave); with one, acquire() may
// wait in the queue (never past the invocation's deadline). A wait ended by a cancellation
// (the caller gone, or a preemptive timeout's cut-off) is no refusal: it ends with the
// cancellation (operation_aborted), which the chain classifies, and no rejection is counted.
class BulkheadInterceptor final : public SynchronousInterceptor {
 public:
  explicit BulkheadInterceptor(std::shared_ptr<Bulkhead> bulkhead,
                               std::optional<int> weight = std::nullopt,
                               std::string name = "bulkhead");
  Bulkhead& bulkhead() const noexcept { return *bulkhead_; }
  // Fixed when the interceptor is made (a chain reads it once): a reconfigured bulkhead
  // serves both its acquire paths whatever its queue.
  bool synchronous() const noexcept override { return synchronous_; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;
  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override;

 private:
  std::shared_ptr<Bulkhead> bulkhead_;
  bool synchronous_ = true;
};

}  // namespace coromesh::qos
