#include "connect_native.hpp"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "coromesh/connect/peer_serial.hpp"
#include "coromesh/connect/peer_verifier.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/metrics/registry.hpp"
#include "coromesh/runtime/io_pool.hpp"
#include "coromesh/runtime/run_on.hpp"

namespace coromesh::detail {

namespace asio = boost::asio;

namespace {

// The leaf's expiry and the material's generation, read at scrape time.
class CertificateGauges final : public prometheus::Collectable {
 public:
  explicit CertificateGauges(std::weak_ptr<const connect::CertificateSource> source)
      : source_(std::move(source)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families;
    const auto source = source_.lock();
    if (!source) {
      return families;
    }
    families.push_back(gauge("coromesh_connect_native_tls_material_generation",
                             "Changes of the leaf or the CA roots taken so far (1: the first).",
                             static_cast<double>(source->generation())));
    if (const auto expiry = source->leaf_expiry()) {
      families.push_back(gauge("coromesh_connect_native_leaf_expiry_timestamp_seconds",
                               "When this service's current leaf certificate expires (Unix time).",
                               std::chrono::duration<double>(expiry->time_since_epoch()).count()));
    }
    return families;
  }

 private:
  static prometheus::MetricFamily gauge(std::string name, std::string help, double value) {
    prometheus::MetricFamily family{.name = std::move(name),
                                    .help = std::move(help),
                                    .type = prometheus::MetricType::Gauge,
                                    .metric = {}};
    family.metric.emplace_back();
    family.metric.back().gauge.value = value;
    return family;
  }

  std::weak_ptr<const connect::CertificateSource> source_;
};

// A failed handshake's reason, either side: the Connect module's refusal names
// (untrusted_chain, expired_certificate, no_certificate, handshake_failed, ...).
std::string handshake_failure_reason(SSL* session, const boost::system::error_code& error) {
  return std::string(to_string(connect::classify_handshake_failure(session, error).refusal));
}

}  // namespace

ConnectNative::ConnectNative(asio::any_io_executor executor, consul::AgentClient& consul,
                             std::string service, metrics::MetricsRegistry& metrics)
    : executor_(executor),
      service_(std::move(service)),
      certificates_(std::make_shared<connect::CertificateSource>(executor, consul, service_)),
      authorizer_(consul),
      handshakes_(prometheus::BuildCounter()
                      .Name("coromesh_connect_native_handshakes_total")
                      .Help("mTLS handshakes of this Connect-native service's port, by result "
                            "and the reason of a refusal or failure (e.g. unauthorized, "
                            "untrusted_chain).")
                      .Register(*metrics.prometheus_registry())),
      upstream_handshakes_(
          prometheus::BuildCounter()
              .Name("coromesh_connect_native_upstream_handshakes_total")
              .Help("mTLS handshakes of this service's typed clients with the Connect endpoints "
                    "of a callee (upstream), by result and the reason of a refusal or failure "
                    "(e.g. expired_certificate, unexpected_service).")
              .Register(*metrics.prometheus_registry())) {
  metrics.add_collectable(std::make_shared<CertificateGauges>(
      std::weak_ptr<const connect::CertificateSource>(certificates_)));
}

void ConnectNative::start() {
  asio::co_spawn(
      executor_, certificates_->run(),
      asio::bind_cancellation_slot(stop_certificates_.slot(),
                                   runtime::LogEscapedException{"connect_native.certificates"}));
}

void ConnectNative::stop() {
  stop_certificates_.emit(asio::cancellation_type::terminal);
}

asio::awaitable<void> ConnectNative::ready() {
  co_await certificates_->ready();
}

http::ServerTls ConnectNative::server_tls(std::chrono::milliseconds handshake_timeout) {
  const auto* certificates = certificates_.get();
  auto* authorizer = &authorizer_;
  return http::ServerTls{
      .context = [certificates] { return certificates->server_context(); },
      .handshake_timeout = handshake_timeout,
      // The chain was checked against the roots by OpenSSL; this reads the SPIFFE ID.
      .accept_peer =
          [certificates](SSL* session) {
            const auto verdict =
                connect::verify_peer(session, {.trust_domain = certificates->trust_domain()});
            return verdict ? http::PeerVerdict::accept(verdict.peer->uri())
                           : http::PeerVerdict::refuse(std::string(to_string(verdict.refusal)));
          },
      // Intentions: asked of the agent through the Authorizer, on its executor. The
      // Authorizer outlives every connection (see the header); the arguments are copies.
      .authorize_peer = [authorizer, executor = executor_, service = service_](
                            std::string identity,
                            SSL* session) -> asio::awaitable<http::PeerVerdict> {
        const auto parsed = connect::parse_spiffe_id(identity);
        if (!parsed) {
          co_return http::PeerVerdict::refuse("invalid_spiffe_uri");
        }
        std::string serial = connect::peer_serial(session);
        // run_on, not co_spawn + use_awaitable: a drain cancelling the connection as the
        // answer arrives must not reach freed memory (coromesh/runtime/run_on.hpp).
        const auto decision = co_await runtime::run_on(
            executor, authorizer->authorize(service, *parsed.id, std::move(serial)));
        if (!decision.authorized) {
          log::write_limited(
              log::Level::warn, "connect_native.unauthorized", identity,
              {{"peer", identity},
               {"reason", decision.reason.empty() ? decision.detail : decision.reason},
               {"source", connect::to_string(decision.source)}});
          // Counted by whose verdict it was, as the sidecar counts it: an agent that could
          // not decide is not a denied caller.
          co_return http::PeerVerdict::refuse(
              std::string(connect::refusal_reason(decision)),
              connect::refusal_answer(decision, service, *parsed.id));
        }
        co_return http::PeerVerdict::accept(std::move(identity));
      },
      .describe_failure = handshake_failure_reason};
}

std::shared_ptr<const http::ClientTls> ConnectNative::client_tls(const std::string& service) const {
  const auto* certificates = certificates_.get();
  return std::make_shared<const http::ClientTls>(http::ClientTls{
      .context = [certificates] { return certificates->client_context(); },
      .server_name = {},
      // Every endpoint of `service` (its sidecars or its native instances) must present
      // a certificate naming it.
      .verify_peer =
          [certificates, service](SSL* session) {
            const auto verdict = connect::verify_peer(
                session, {.trust_domain = certificates->trust_domain(), .service = service});
            return verdict ? http::PeerVerdict::accept(verdict.peer->uri())
                           : http::PeerVerdict::refuse(std::string(to_string(verdict.refusal)));
          },
      .pool_key = "connect:" + service,
      .describe_failure = handshake_failure_reason,
      // The family lives in the metrics registry, which outlives the typed clients.
      .on_handshake =
          [family = &upstream_handshakes_, service](http::TlsHandshakeResult result,
                                                    std::string_view reason) {
            family
                ->Add({{"upstream", service},
                       {"result", std::string(http::to_string(result))},
                       {"reason", std::string(reason)}})
                .Increment();
          }});
}

void ConnectNative::count_handshake(http::TlsHandshakeResult result, std::string_view reason) {
  handshakes_
      .Add({{"result", std::string(http::to_string(result))}, {"reason", std::string(reason)}})
      .Increment();
}

}  // namespace coromesh::detail
