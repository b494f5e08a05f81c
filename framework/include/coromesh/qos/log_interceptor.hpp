#pragma once

// One log line per call, as a chain interceptor.

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>

#include "coromesh/qos/chain.hpp"

namespace coromesh::qos {

// One line at entry (debug) and one at exit: `qos.call` with operation, attempt count,
// duration, outcome (ok / rejected / error), and policy+reason or the error message.
// Exit lines are info for ok, warn for a fault.
class LogInterceptor final : public SynchronousInterceptor {
 public:
  explicit LogInterceptor(std::optional<int> weight = std::nullopt, std::string name = "log");
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;
};

}  // namespace coromesh::qos
