#pragma once

// A real Prometheus server for tests, on a free loopback port with a generated
// configuration (global interval 1s, and a job scraping Prometheus itself so `up`
// always has a sample). Extra scrape_configs entries can be appended, e.g. a
// consul_sd_configs job. Like ConsulAgent, it throws with the log tail if it cannot
// start; nothing skips.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "child_process.hpp"
#include "http_fetch.hpp"
#include "test_env.hpp"

namespace coromesh::testing {

struct PrometheusOptions {
  // When set, the configuration is the project's own ops/prometheus/prometheus.yml.in
  // (Consul service discovery) rendered for this Consul address, plus the self-scrape
  // job; this is how the tests prove the shipped configuration works.
  std::string consul_address;
  // With consul_address: a file holding the ACL token the discovery sends to Consul
  // (authorization Bearer credentials_file, as ops/lib/acl.sh's acl_prometheus_config).
  std::string consul_token_file;
  // YAML for further list items under `scrape_configs:`, indented by two spaces.
  std::string extra_scrape_configs;
};

class PrometheusServer {
 public:
  explicit PrometheusServer(const PrometheusOptions& options = {});
  ~PrometheusServer();
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  // GET /api/v1/query?query=<promql>; the body is Prometheus' JSON answer.
  FetchResult query(const std::string& promql) const;

  // One series of an instant-query result: its labels and its value as Prometheus
  // writes it ("1", "0.25").
  struct Sample {
    std::map<std::string, std::string> labels;
    std::string value;
  };
  // Polls `promql` until its first series satisfies `accept` (any series when null), or
  // `timeout` passes; nullopt then.
  std::optional<Sample> wait_for_sample(
      const std::string& promql, std::chrono::milliseconds timeout,
      const std::function<bool(const Sample&)>& accept = {}) const;

 private:
  TempDir dir_{"coromesh-prometheus"};
  std::uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

// Percent-encodes a query-string value.
std::string url_encode(const std::string& value);

}  // namespace coromesh::testing
