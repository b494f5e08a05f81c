#include "coromesh/connect/certificate_source.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <exception>

#include "coromesh/connect/tls_contexts.hpp"
#include "coromesh/log/logger.hpp"

namespace coromesh::connect {

namespace asio = boost::asio;

CertificateSource::CertificateSource(asio::any_io_executor executor, consul::AgentClient& consul,
                                     std::string service, CertificateSourceOptions options)
    : executor_(std::move(executor)),
      consul_(consul),
      service_(std::move(service)),
      options_(options),
      first_material_(executor_, asio::steady_timer::time_point::max()) {}

CertificateSource::~CertificateSource() = default;

asio::awaitable<void> CertificateSource::run() {
  using namespace asio::experimental::awaitable_operators;
  consul::WatchQuery<consul::CaRoots> roots_query = [this](consul::QueryOptions next) {
    return consul_.connect_ca_roots(next);
  };
  consul::WatchQuery<consul::LeafCertificate> leaf_query = [this](consul::QueryOptions next) {
    return consul_.connect_ca_leaf(service_, next);
  };
  consul::WatchCallback<consul::CaRoots> roots_changed = [this](const consul::CaRoots& roots) {
    on_roots(roots);
  };
  consul::WatchCallback<consul::LeafCertificate> leaf_changed =
      [this](const consul::LeafCertificate& leaf) { on_leaf(leaf); };
  auto roots_watch = consul::watch<consul::CaRoots>("connect_roots", std::move(roots_query),
                                                    std::move(roots_changed), options_.watch);
  auto leaf_watch = consul::watch<consul::LeafCertificate>(
      "connect_leaf:" + service_, std::move(leaf_query), std::move(leaf_changed), options_.watch);
  // Both watches end together: on cancellation each returns, and `&&` forwards the
  // cancellation to both. The callbacks never throw (see rebuild()), so neither watch
  // ends by itself.
  std::exception_ptr error;
  std::string why = "stopped";
  try {
    co_await (std::move(roots_watch) && std::move(leaf_watch));
  } catch (const std::exception& e) {
    error = std::current_exception();
    why = e.what();
  } catch (...) {
    error = std::current_exception();
    why = "unknown exception";
  }
  ended(std::move(why));
  if (error) {
    std::rethrow_exception(error);
  }
}

void CertificateSource::ended(std::string why) {
  ended_ = std::move(why);
  first_material_.cancel();  // wakes every ready(): without material, it fails
}

asio::awaitable<void> CertificateSource::ready() {
  while (generation_.load() == 0) {
    if (ended_) {
      throw CertificateSourceStopped("connect: the certificate source of '" + service_ +
                                     "' ended before Consul issued its certificate (" + *ended_ +
                                     ")");
    }
    co_await first_material_.async_wait(asio::as_tuple(asio::use_awaitable));
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none && generation_.load() == 0) {
      throw boost::system::system_error(asio::error::operation_aborted);
    }
  }
}

// A watch delivers every answer whose index moved, and Consul moves indexes for changes
// elsewhere too: only a different value makes a new generation.
void CertificateSource::on_roots(const consul::CaRoots& roots) {
  if (roots_ == roots) {
    return;
  }
  roots_ = roots;
  rebuild();
}

void CertificateSource::on_leaf(const consul::LeafCertificate& leaf) {
  if (leaf_ == leaf) {
    return;
  }
  leaf_ = leaf;
  rebuild();
}

void CertificateSource::rebuild() {
  if (!roots_ || !leaf_) {
    return;
  }
  auto material = std::make_shared<TlsMaterial>();
  try {
    material->server = make_tls_context(TlsRole::server, *leaf_, *roots_);
    material->client = make_tls_context(TlsRole::client, *leaf_, *roots_);
  } catch (const std::exception& e) {
    // Keep serving with the last good material; the next answer may be usable.
    log::error("connect.tls.material_refused", {{"service", service_},
                                                {"serial", leaf_->serial_number},
                                                {"error", e.what()},
                                                {"generation", generation_.load()}});
    return;
  }
  material->roots = *roots_;
  material->leaf_serial = leaf_->serial_number;
  material->leaf_uri = leaf_->service_uri;
  material->leaf_valid_before = leaf_->valid_before;
  {
    std::lock_guard lock(mutex_);
    material->generation = generation_.load() + 1;
    current_ = material;
    generation_.store(material->generation);
  }
  log::info("connect.tls.material", {{"service", service_},
                                     {"generation", material->generation},
                                     {"serial", material->leaf_serial},
                                     {"active_root", material->roots.active_root_id},
                                     {"roots", material->roots.roots.size()}});
  if (material->generation == 1) {
    first_material_.cancel();  // wakes every ready()
  }
}

std::shared_ptr<const TlsMaterial> CertificateSource::material() const {
  std::lock_guard lock(mutex_);
  return current_;
}

std::shared_ptr<asio::ssl::context> CertificateSource::server_context() const {
  auto current = material();
  return current ? current->server : nullptr;
}

std::shared_ptr<asio::ssl::context> CertificateSource::client_context() const {
  auto current = material();
  return current ? current->client : nullptr;
}

std::optional<std::chrono::system_clock::time_point> CertificateSource::leaf_expiry() const {
  auto current = material();
  if (!current) {
    return std::nullopt;
  }
  return current->leaf_valid_before;
}

std::string CertificateSource::trust_domain() const {
  auto current = material();
  return current ? current->roots.trust_domain : std::string();
}

}  // namespace coromesh::connect
