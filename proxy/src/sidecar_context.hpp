#pragma once

// What the sidecar's listeners share: the Consul agent and the Connect pieces bound to
// its executor (the service's executor 0), the metrics and the connection registry.
// Owned by the Sidecar component (sidecar.hpp), which outlives every listener and
// connection coroutine (the Service destroys components after its io pool has unwound).

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>

#include "connection_registry.hpp"
#include "coromesh/connect/authorizer.hpp"
#include "coromesh/connect/certificate_source.hpp"
#include "coromesh/consul/agent_client.hpp"
#include "sidecar_metrics.hpp"
#include "sidecar_settings.hpp"

namespace coromesh::sidecar {

struct SidecarContext {
  // The agent client's executor: Consul calls, the Authorizer, the watches and every
  // acceptor run there.
  boost::asio::any_io_executor consul_executor;
  consul::AgentClient& consul;
  connect::CertificateSource& certificates;
  connect::Authorizer& authorizer;
  SidecarMetrics& metrics;
  ConnectionRegistry& connections;
  const SidecarSettings& settings;
};

// The current TLS context for `role`; in the first moments after start-up, before
// Consul has sent the leaf, waits for it (polling, on the caller's executor) up to
// `patience`. Null when it did not come. A cancelled wait throws operation_aborted.
boost::asio::awaitable<std::shared_ptr<boost::asio::ssl::context>> current_tls_context(
    const connect::CertificateSource& certificates, bool server, std::chrono::nanoseconds patience);

// Throws operation_aborted once `state` (a coroutine's, from this_coro::cancellation_state)
// has been cancelled. For the moment after a `||` with a timer: a cancellation ends both
// branches, the timer's among them, and the timer's "fired" must then not be read as a
// timeout to blame on someone.
void throw_if_cancelled(const boost::asio::cancellation_state& state);

}  // namespace coromesh::sidecar
