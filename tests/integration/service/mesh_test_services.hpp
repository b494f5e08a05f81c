#pragma once

// In-process services for the discovery and Connect-native tests: a `whoami` operation
// served by several instances of one Consul service, each answering with its instance
// ID (or the error it is told to give), and a blocking way to call it from a test.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <coromesh/http/error.hpp>
#include <coromesh/runtime/io_pool.hpp>
#include <coromesh/service/service.hpp>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "consul_agent.hpp"

namespace coromesh::testing {

struct WhoamiProbe {
  std::optional<std::int64_t> fail_status;  // a failing instance answers this status
};
BOOST_DESCRIBE_STRUCT(WhoamiProbe, (), (fail_status))

struct WhoamiReply {
  std::string instance;
  std::string caller;  // the peer identity the instance saw (native: a SPIFFE URI)
};
BOOST_DESCRIBE_STRUCT(WhoamiReply, (), (instance, caller))

// Served by the Consul service "whoami"; no --upstreams entry needed to call it. Retries
// of 502/503/504 and transport errors, as the calculator's operators declare them.
COROMESH_OPERATION(whoami, GET, "/api/v1/whoami", WhoamiProbe, WhoamiReply,
                   coromesh::served_by("whoami"),
                   CLIENT_QOS(qos::timeout{.per_attempt = 5s},
                              qos::retry{
                                  .max_attempts = 3, .base_backoff = 1ms, .max_backoff = 4ms}));

inline config::ServiceConfig mesh_service_config(const ConsulAgent& consul, std::string name,
                                                 config::MeshMode mesh) {
  using namespace std::chrono_literals;
  config::ServiceConfig config;
  config.name = std::move(name);
  config.consul = config::Address{"127.0.0.1", consul.http_port()};
  config.io_threads = 2;
  config.log_level = log::Level::warn;
  config.shutdown_grace = 2s;
  // The check's timeout is its interval (framework/src/service/service.cpp). 200 ms is
  // too short a deadline for /health in an instrumented test process sharing 2 cores
  // with other tests: an ASan run (2026-11-29) saw whoami's check go critical, so calls
  // failed with "no passing instance" during the CA rotation tests. Under a sanitizer
  // the interval (and timeout) is 1 s; every wait on Consul here allows 30 s or more.
  config.check_interval = std::string_view(COROMESH_TEST_SANITIZER).empty() ? 200ms : 1s;
  config.consul_resync_interval = 1s;
  config.mesh = mesh;
  return config;
}

// An instance of "whoami"; when `fail_all` is set it answers every probe that asks for
// a failure with that status (the others answer every probe normally).
inline std::unique_ptr<Service> start_whoami(const ConsulAgent& consul, config::MeshMode mesh,
                                             bool failing = false) {
  auto service = std::make_unique<Service>(mesh_service_config(consul, "whoami", mesh));
  auto* self = service.get();
  service->serve(
      whoami,
      [self, failing](WhoamiProbe probe,
                      const CallContext& call) -> boost::asio::awaitable<WhoamiReply> {
        if (probe.fail_status && (failing || *probe.fail_status < 500)) {
          throw http::HttpError(static_cast<http::Status>(*probe.fail_status), "told_to_fail",
                                "this instance fails on purpose");
        }
        co_return WhoamiReply{self->instance_id(), std::string(call.request->peer_identity)};
      });
  service->start();
  return service;
}

// Runs one call of `client` on `service`'s io thread 0 and waits for it; rethrows what
// the call threw.
template <class Client>
WhoamiReply call_whoami(Service& service, Client& client, WhoamiProbe probe = {}) {
  auto future = boost::asio::co_spawn(
      service.pool().executor(0),
      [&client, probe]() -> boost::asio::awaitable<WhoamiReply> {
        co_return co_await client.execute(probe);
      },
      boost::asio::use_future);
  return future.get();
}

}  // namespace coromesh::testing
