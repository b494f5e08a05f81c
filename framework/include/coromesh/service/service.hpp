#pragma once

// A coromesh service: the one object a service's main() builds. It owns the io pool,
// the HTTP server with its router, the metrics registry and the Consul registration,
// and runs them from start-up to a graceful shutdown:
//
//   int main(int argc, char** argv) {
//     coromesh::Service service({.defaults = {.name = "hello"}}, argc, argv);
//     service.route<Greeting>(coromesh::http::Verb::get, "/api/v1/hello", "greet", greet);
//     return service.run();
//   }
//
// Every service gets `GET /health` (200, or 503 while shutting down), `GET /metrics`
// (Prometheus text format) and `--help`, and registers in Consul with the `metrics`
// tag and a `metrics_path` Meta key so one Prometheus job finds them all.
//
// Shutdown on SIGINT/SIGTERM, in two phases: /health turns 503 and the Consul
// registration is put in maintenance (critical) and removed; then the server stops
// taking requests, in-flight ones get `shutdown_grace` to finish, and whatever is left
// is cancelled. A second signal exits at once.
//
// Threads: declare routes before run()/start(); everything else is internal.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "coromesh/config/service_config.hpp"
#include "coromesh/http/router.hpp"
#include "coromesh/http/typed_handler.hpp"

namespace coromesh::metrics {
class MetricsRegistry;
}
namespace coromesh::runtime {
class IoPool;
}

namespace coromesh {

class Service {
 public:
  // Parses flags, environment and config file; --help prints and exits 0, a bad
  // setting prints one line and exits 2.
  Service(const config::ServiceConfigOptions& options, int argc, const char* const* argv);
  // From an already parsed configuration (tests, embedding).
  explicit Service(config::ServiceConfig config);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Adds an operation whose argument struct is bound from the query (GET) or the JSON
  // body (other methods); see http/typed_handler.hpp.
  template <class Arg, class F>
  Service& route(http::Verb method, std::string_view path, std::string operation, F f) {
    router().add(method, path, std::move(operation),
                 http::typed_handler<Arg>(method, std::move(f)));
    return *this;
  }
  // Adds a raw handler.
  Service& route(http::Verb method, std::string_view path, std::string operation,
                 http::Handler handler) {
    router().add(method, path, std::move(operation), std::move(handler));
    return *this;
  }

  http::Router& router();
  metrics::MetricsRegistry& metrics();
  runtime::IoPool& pool();
  const config::ServiceConfig& config() const;

  // Serves until SIGINT/SIGTERM, then shuts down gracefully; returns the exit code.
  int run();

  // For tests and embedding: start() binds, registers and serves on the pool's
  // threads and returns; request_shutdown() starts the graceful shutdown (any
  // thread); wait() blocks until it has finished and returns the exit code.
  void start();
  void request_shutdown();
  int wait();
  std::uint16_t port() const;
  // The Consul service ID this instance registers under.
  std::string instance_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coromesh
