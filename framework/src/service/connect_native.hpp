#pragma once

// What --mesh=native adds to a Service (service.hpp): the service's own Connect TLS
// material (leaf + roots from Consul, hot-swapped), the mTLS set-up of its HTTP server
// (peer chain checked against the roots, SPIFFE identity read, then authorized by
// Consul's intentions through the Authorizer; a refused peer is closed, logged and
// counted), and the mTLS set-up of its typed clients towards another service (the peer's
// SPIFFE ID must name that service). Private to the framework.
//
// Ownership: owned by Service::Impl, declared after the io pool and before the typed
// clients and the HTTP server, so it outlives everything that calls into it.
// Threads: start()/stop() on the agent client's executor (executor 0; start() before the
// pool runs); the TLS callbacks run on connections' io threads and only read
// thread-safe state (CertificateSource's published material).

#include <prometheus/counter.h>
#include <prometheus/family.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "coromesh/connect/authorizer.hpp"
#include "coromesh/connect/certificate_source.hpp"
#include "coromesh/http/tls.hpp"

namespace coromesh::metrics {
class MetricsRegistry;
}

namespace coromesh::detail {

class ConnectNative {
 public:
  // `consul` must outlive this object; `executor` is its executor.
  ConnectNative(boost::asio::any_io_executor executor, consul::AgentClient& consul,
                std::string service, metrics::MetricsRegistry& metrics);

  // Starts following the leaf and the roots (spawned on the executor).
  void start();
  // Stops following them; the material published so far stays in use. On the executor.
  void stop();
  // Returns once the first leaf and roots have arrived (on the executor).
  boost::asio::awaitable<void> ready();

  // The server side: every connection mTLS, peers authorized by intentions.
  http::ServerTls server_tls(std::chrono::milliseconds handshake_timeout);
  // The client side towards `service`'s Connect endpoints; each handshake counted in
  // coromesh_connect_native_upstream_handshakes_total{upstream=service,result,reason}.
  std::shared_ptr<const http::ClientTls> client_tls(const std::string& service) const;

  // The http::ServerObserver hook: counts every handshake of the mTLS port.
  void count_handshake(http::TlsHandshakeResult result, std::string_view reason);

  const connect::CertificateSource& certificates() const noexcept { return *certificates_; }

 private:
  boost::asio::any_io_executor executor_;
  std::string service_;
  // Shared with the gauges the metrics registry reads (held weakly there).
  std::shared_ptr<connect::CertificateSource> certificates_;
  connect::Authorizer authorizer_;
  boost::asio::cancellation_signal stop_certificates_;
  prometheus::Family<prometheus::Counter>& handshakes_;
  prometheus::Family<prometheus::Counter>& upstream_handshakes_;
};

}  // namespace coromesh::detail
