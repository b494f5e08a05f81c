#pragma once

// How the process' calls to its Consul agent ended, so that an ACL token without the
// rights it needs (or a revoked one) shows on a dashboard while the process keeps
// serving on what it last knew:
//
//   coromesh_consul_requests_total{outcome="ok|not_found|forbidden|rejected|failed|unreachable|throttled|timeout"}
//
// Read from `source` (an HttpAgentClient's request_counts()) on every Collect(); add one
// per process registry (MetricsRegistry::add_collectable).
//
// Threads: Collect() is const and may be called from any thread, concurrently.

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <vector>

#include "coromesh/consul/http_agent_client.hpp"

namespace coromesh::metrics {

class ConsulCollector final : public prometheus::Collectable {
 public:
  explicit ConsulCollector(std::function<consul::RequestCounts()> source);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::function<consul::RequestCounts()> source_;
};

}  // namespace coromesh::metrics
