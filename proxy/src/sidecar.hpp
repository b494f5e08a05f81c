#pragma once

// coromesh-sidecar as a component of a coromesh::Service: the service's own HTTP server
// is the admin port (/metrics, /health), and this component adds the public mTLS
// listener, one loopback listener per upstream and the Connect material they use.
//
//   auto sidecar = Sidecar::install(service, settings);  // before service.run()
//
// install() adds the component and, when the sidecar registers itself (--register),
// the registration shaper that turns the service's registration into the
// connect-proxy's: Kind connect-proxy on the public port, Proxy.Destination*,
// LocalService*, Upstreams[], and checks that pass only while the public port accepts
// (TCP) and the local service is healthy (an alias of --service-id, or TCP on
// --service-addr). The service's HTTP check of the admin /health stays as well.
//
// With -sidecar-for the connect-proxy registration is the operator's: it is followed
// with hash-based blocking queries on /v1/agent/service/<id> (a change arrives within
// the agent's answer time; a poll every --registration-poll only when the agent sends no
// content hash) and its upstreams applied without a restart (new listeners opened,
// removed or replaced ones closed and their own connections drained: http mode's end
// between requests, or after the answer in hand; tcp mode's run on to their natural
// end, UpstreamListener::retire). The sidecar then
// registers only its admin port, as `<proxy-id>-admin` (tag `metrics`, Meta
// `metrics_port` and `proxy_id`), for Prometheus' Consul discovery.
//
// Lifecycle (component.hpp): start() binds every listener and starts the watches;
// stop_accepting() closes the listeners; drain() waits for proxied connections until
// the deadline, cuts off the rest and stops the watches.
//
// Threads: install() before start; the rest is driven by the Service.

#include <boost/asio/cancellation_signal.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "coromesh/service/service.hpp"
#include "inbound_listener.hpp"
#include "sidecar_context.hpp"
#include "upstream_listener.hpp"

namespace coromesh::sidecar {

class Sidecar final : public ServiceComponent, public std::enable_shared_from_this<Sidecar> {
 public:
  static std::shared_ptr<Sidecar> install(Service& service, SidecarSettings settings);

  Sidecar(Service& service, SidecarSettings settings);
  ~Sidecar() override;

  std::string_view name() const noexcept override { return "sidecar"; }
  void start(runtime::IoPool& pool) override;
  boost::asio::awaitable<void> stop_accepting() override;
  boost::asio::awaitable<std::size_t> drain(
      std::chrono::steady_clock::time_point deadline) override;

  // 0 without a public listener (an upstream-only sidecar: no --listen).
  std::uint16_t public_port() const noexcept { return inbound_ ? inbound_->port() : 0; }
  // Upstream name -> endpoints in its latest answer (the gauge); any thread.
  std::map<std::string, std::size_t> upstream_endpoints() const;
  const connect::CertificateSource& certificates() const noexcept { return certificates_; }

 private:
  void shape(consul::ServiceRegistration& registration) const;
  // Opens listeners for new upstreams and closes those no longer wanted (consul executor).
  // At start-up (`live` false) a listener that cannot bind throws: a configuration error.
  // A live change (`live`, the followed registration) logs it and goes on.
  void apply_upstreams(const std::vector<UpstreamSpec>& wanted, bool live);
  // -sidecar-for: follows the registration with hash-based blocking queries (a poll
  // every --registration-poll when the agent cannot block) and applies its upstreams.
  boost::asio::awaitable<void> follow_registration();
  void apply_registration_change(const consul::AgentService& registration);

  SidecarSettings settings_;
  runtime::IoPool* pool_ = nullptr;
  SidecarMetrics metrics_;
  ConnectionRegistry connections_;
  connect::CertificateSource certificates_;
  connect::Authorizer authorizer_;
  SidecarContext context_;
  std::optional<InboundListener> inbound_;  // none for an upstream-only sidecar

  mutable std::mutex upstreams_mutex_;  // guards upstreams_ for the gauges' readers
  std::map<std::string, std::shared_ptr<UpstreamListener>> upstreams_;  // by "name:port"
  boost::asio::cancellation_signal stop_certificates_;
  boost::asio::cancellation_signal stop_following_;
};

}  // namespace coromesh::sidecar
