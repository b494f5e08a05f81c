#pragma once

// The configuration of a service run inside a test process: not registered in Consul,
// one io thread, a short shutdown grace, and quiet logs.

#include <chrono>
#include <coromesh/config/service_config.hpp>
#include <string>

namespace coromesh::testing {

inline config::ServiceConfig in_process(
    std::string name, log::Level level = log::Level::error,
    std::chrono::milliseconds shutdown_grace = std::chrono::seconds(1)) {
  config::ServiceConfig config;
  config.name = std::move(name);
  config.consul_register = false;
  config.io_threads = 1;
  config.log_level = level;
  config.shutdown_grace = shutdown_grace;
  return config;
}

}  // namespace coromesh::testing
