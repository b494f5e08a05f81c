#include "sidecar.hpp"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <set>

#include "coromesh/consul/agent_client.hpp"
#include "coromesh/http/tls.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/metrics/registry.hpp"
#include "coromesh/runtime/io_pool.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;

namespace {

std::string upstream_key(const UpstreamSpec& spec) {
  return spec.service + ":" + std::to_string(spec.port);
}

// Gauges read at scrape time: endpoints per upstream, the leaf's expiry. Holds the
// sidecar weakly: the registry may be rendered during shutdown.
class SidecarGauges final : public prometheus::Collectable {
 public:
  explicit SidecarGauges(std::weak_ptr<const Sidecar> sidecar) : sidecar_(std::move(sidecar)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families;
    const auto sidecar = sidecar_.lock();
    if (!sidecar) {
      return families;
    }
    prometheus::MetricFamily endpoints{
        .name = "coromesh_sidecar_upstream_endpoints",
        .help = "Passing Connect endpoints of each upstream in Consul's latest answer.",
        .type = prometheus::MetricType::Gauge,
        .metric = {}};
    for (const auto& [upstream, count] : sidecar->upstream_endpoints()) {
      prometheus::ClientMetric metric;
      metric.label.push_back({"upstream", upstream});
      metric.gauge.value = static_cast<double>(count);
      endpoints.metric.push_back(std::move(metric));
    }
    families.push_back(std::move(endpoints));
    prometheus::MetricFamily generation{
        .name = "coromesh_sidecar_tls_material_generation",
        .help = "Changes of the leaf or the CA roots taken so far (1: the first material).",
        .type = prometheus::MetricType::Gauge,
        .metric = {}};
    generation.metric.emplace_back();
    generation.metric.back().gauge.value =
        static_cast<double>(sidecar->certificates().generation());
    families.push_back(std::move(generation));
    if (const auto expiry = sidecar->certificates().leaf_expiry()) {
      prometheus::MetricFamily leaf{
          .name = "coromesh_sidecar_leaf_expiry_timestamp_seconds",
          .help = "When the sidecar's current leaf certificate expires (Unix time).",
          .type = prometheus::MetricType::Gauge,
          .metric = {}};
      prometheus::ClientMetric metric;
      metric.gauge.value = std::chrono::duration<double>(expiry->time_since_epoch()).count();
      leaf.metric.push_back(std::move(metric));
      families.push_back(std::move(leaf));
    }
    return families;
  }

 private:
  std::weak_ptr<const Sidecar> sidecar_;
};

}  // namespace

asio::awaitable<std::shared_ptr<asio::ssl::context>> current_tls_context(
    const connect::CertificateSource& certificates, bool server,
    std::chrono::nanoseconds patience) {
  // The source outlives every listener and connection that asks (sidecar_context.hpp).
  auto provide = [&certificates, server] {
    return server ? certificates.server_context() : certificates.client_context();
  };
  if (auto context = provide()) {
    co_return context;
  }
  co_return co_await http::await_tls_context(
      provide, std::chrono::steady_clock::now() +
                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(patience));
}

void throw_if_cancelled(const asio::cancellation_state& state) {
  if (state.cancelled() != asio::cancellation_type::none) {
    throw boost::system::system_error(asio::error::operation_aborted);
  }
}

std::shared_ptr<Sidecar> Sidecar::install(Service& service, SidecarSettings settings) {
  auto sidecar = std::make_shared<Sidecar>(service, std::move(settings));
  service.add_component(sidecar);
  service.shape_registration(
      [weak = std::weak_ptr<Sidecar>(sidecar)](consul::ServiceRegistration& registration) {
        if (auto alive = weak.lock()) {
          alive->shape(registration);
        }
      });
  service.metrics().add_collectable(
      std::make_shared<SidecarGauges>(std::weak_ptr<const Sidecar>(sidecar)));
  return sidecar;
}

Sidecar::Sidecar(Service& service, SidecarSettings settings)
    : settings_(std::move(settings)),
      metrics_(service.metrics()),
      certificates_(service.pool().executor(0), service.consul_agent(), settings_.service),
      authorizer_(service.consul_agent()),
      context_{.consul_executor = service.pool().executor(0),
               .consul = service.consul_agent(),
               .certificates = certificates_,
               .authorizer = authorizer_,
               .metrics = metrics_,
               .connections = connections_,
               .settings = settings_} {
  if (settings_.listen.port != 0) {
    inbound_.emplace(context_, settings_.listen,
                     InboundTarget{.service = settings_.service,
                                   .local = resolve_now(settings_.service_address),
                                   .mode = settings_.inbound_mode});
  }
}

Sidecar::~Sidecar() = default;

void Sidecar::start(runtime::IoPool& pool) {
  pool_ = &pool;
  asio::co_spawn(
      context_.consul_executor, certificates_.run(),
      asio::bind_cancellation_slot(stop_certificates_.slot(),
                                   runtime::LogEscapedException{"sidecar.certificates"}));
  if (inbound_) {
    inbound_->start(pool);
  }
  apply_upstreams(settings_.upstreams, false);
  if (!settings_.sidecar_for.empty()) {
    asio::co_spawn(
        context_.consul_executor, follow_registration(),
        asio::bind_cancellation_slot(stop_following_.slot(),
                                     runtime::LogEscapedException{"sidecar.registration_watch"}));
  }
}

asio::awaitable<void> Sidecar::stop_accepting() {
  stop_following_.emit(asio::cancellation_type::terminal);
  if (inbound_) {
    inbound_->stop();
  }
  {
    const std::lock_guard lock(upstreams_mutex_);
    for (const auto& [key, upstream] : upstreams_) {
      upstream->stop();
    }
  }
  connections_.begin_drain();
  co_return;
}

asio::awaitable<std::size_t> Sidecar::drain(std::chrono::steady_clock::time_point deadline) {
  const std::size_t cut = co_await connections_.drain(deadline);
  stop_certificates_.emit(asio::cancellation_type::terminal);
  co_return cut;
}

std::map<std::string, std::size_t> Sidecar::upstream_endpoints() const {
  std::map<std::string, std::size_t> out;
  const std::lock_guard lock(upstreams_mutex_);
  for (const auto& [key, upstream] : upstreams_) {
    out[upstream->spec().service] += upstream->endpoint_count();
  }
  return out;
}

void Sidecar::apply_upstreams(const std::vector<UpstreamSpec>& wanted, bool live) {
  std::set<std::string> keep;
  for (const auto& spec : wanted) {
    keep.insert(upstream_key(spec));
  }
  const std::lock_guard lock(upstreams_mutex_);
  for (auto it = upstreams_.begin(); it != upstreams_.end();) {
    if (keep.contains(it->first) && std::count(wanted.begin(), wanted.end(), it->second->spec())) {
      ++it;
      continue;
    }
    log::info("sidecar.upstream.removed",
              {{"upstream", it->second->spec().service}, {"port", it->second->port()}});
    it->second->retire();
    it = upstreams_.erase(it);
  }
  for (const auto& spec : wanted) {
    const auto key = upstream_key(spec);
    if (upstreams_.contains(key)) {
      continue;
    }
    auto listener = std::make_shared<UpstreamListener>(context_, spec);
    try {
      listener->start(*pool_);
    } catch (const std::exception& e) {
      if (live) {
        // A live change that cannot bind must not take the running sidecar down, nor end
        // the registration's follower (whatever else is open: the failed one may have
        // replaced the only upstream).
        log::error("sidecar.upstream.bind_failed",
                   {{"upstream", spec.service}, {"port", spec.port}, {"error", e.what()}});
        continue;
      }
      throw;
    }
    upstreams_.emplace(key, std::move(listener));
  }
}

}  // namespace coromesh::sidecar
