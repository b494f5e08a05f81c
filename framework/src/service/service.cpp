#include "coromesh/service/service.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <csignal>
#include <cstdlib>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <typeindex>
#include <utility>

#include "connect_native.hpp"
#include "coromesh/config/error.hpp"
#include "coromesh/consul/error.hpp"
#include "coromesh/consul/http_agent_client.hpp"
#include "coromesh/consul/registrar.hpp"
#include "coromesh/consul/watch.hpp"
#include "coromesh/http/error.hpp"
#include "coromesh/http/server.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/metrics/consul_collector.hpp"
#include "coromesh/metrics/http_server_metrics.hpp"
#include "coromesh/metrics/log_collector.hpp"
#include "coromesh/metrics/process_collector.hpp"
#include "coromesh/metrics/registry.hpp"
#include "coromesh/runtime/io_pool.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/qos_metrics.hpp"
#include "coromesh/version.hpp"

namespace coromesh {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct Service::Impl final : http::ServerObserver {
  explicit Impl(config::ServiceConfig c)
      : config(std::move(c)),
        pool(config.io_threads),
        signals(pool.context(0), SIGINT, SIGTERM),
        http_metrics(metrics, config.name),
        qos_metrics(metrics),
        consul_client(std::make_unique<consul::HttpAgentClient>(
            pool.executor(0), consul::HttpAgentOptions{.address = config.consul.to_string(),
                                                       .token = config.consul_token,
                                                       .token_file = config.consul_token_file})) {
    log::set_level(config.log_level);
    metrics.add_collectable(std::make_shared<metrics::ProcessCollector>());
    metrics.add_collectable(std::make_shared<metrics::LogCollector>());
    // The client outlives every scrape: /metrics is served by the pool, joined before
    // Impl's members go.
    metrics.add_collectable(std::make_shared<metrics::ConsulCollector>(
        [client = consul_client.get()] { return client->request_counts(); }));
  }

  config::ServiceConfig config;
  runtime::IoPool pool;
  asio::signal_set signals;
  http::Router router;
  metrics::MetricsRegistry metrics;
  metrics::HttpServerMetrics http_metrics;
  QosMetrics qos_metrics;
  // --mesh=native: the Connect TLS material and authorization; before the clients and
  // the server, which call into it, so it is destroyed after them.
  std::unique_ptr<detail::ConnectNative> native;
  // One client per operation name, made by Service::client() on any thread.
  struct ClientSlot {
    std::shared_ptr<void> client;
    std::type_index type;
    std::string target;  // "host:port" or "consul:<service>"
  };
  // Callee services found in Consul, by name; their watches run on executor 0 from
  // start() (or their creation, if later) until the shutdown's last step.
  struct Discovery {
    std::shared_ptr<DiscoveredUpstream> upstream;
    std::shared_ptr<asio::cancellation_signal> stop;  // emitted on executor 0 only
  };
  std::map<std::string, Discovery> discovered;  // guarded by declared_mutex
  // Both sides of every declared operation; shared with the override watches. Guarded by
  // declared_mutex (client() may add to them from any thread).
  mutable std::mutex declared_mutex;
  std::vector<std::shared_ptr<const DeclaredOperation>> declared;
  std::map<std::string, ClientSlot> clients;
  // start() has run with Consul registration on: declared operations have their overrides
  // watched, from then on or from the first one declared (a service with none, such as a
  // sidecar, holds no watch).
  bool watching = false;
  bool overrides_watched = false;   // the prefix's watch is spawned
  bool watching_endpoints = false;  // start() has spawned the watches of `discovered`
  std::vector<metrics::OperationMetrics*> route_metrics;  // by Route::index
  metrics::OperationMetrics* unmatched_metrics = nullptr;
  std::unique_ptr<consul::HttpAgentClient> consul_client;
  std::unique_ptr<http::Server> server;
  // Native mode: /health and /metrics in plain HTTP on loopback (Consul's HTTP check
  // cannot present a client certificate; Prometheus scrapes it via Meta metrics_port).
  http::Router admin_router;
  std::unique_ptr<http::Server> admin_server;
  // After the pool: their I/O objects go before the io_contexts they are bound to.
  std::vector<std::shared_ptr<ServiceComponent>> components;
  std::vector<std::function<void(consul::ServiceRegistration&)>> registration_shapers;
  std::unique_ptr<consul::Registrar> registrar;
  std::atomic<bool> shutting_down{false};
  // The operator has signalled once; only the signal handler (executor 0) reads and sets
  // it. Separate from shutting_down: a service shutting itself down (Consul refused its
  // registration) must still drain gracefully on the operator's first SIGTERM.
  bool signalled = false;
  std::atomic<int> exit_code{0};
  bool started = false;
  bool from_command_line = false;  // configuration errors exit 2 instead of throwing

  // http::ServerObserver: called on io threads.
  void request_started(const http::Route*) override { http_metrics.in_flight_inc(); }
  void tls_handshake_finished(http::TlsHandshakeResult result, std::string_view reason) override {
    if (native) {
      native->count_handshake(result, reason);
    }
  }
  void request_finished(const http::Route* route, unsigned status,
                        std::chrono::steady_clock::duration elapsed) override {
    http_metrics.in_flight_dec();
    auto* target = route != nullptr ? route_metrics[route->index] : unmatched_metrics;
    target->observe(static_cast<int>(status), elapsed);
  }

  void add_builtin_routes();
  void start_native(const http::ServerLimits& limits);
  void watch_endpoints(const Discovery& discovery);
  consul::ServiceRegistration registration() const;
  void start();
  // An --upstreams entry no client uses at start-up is most likely a typo, whose operation
  // then goes to Consul (served_by) or fails: said once, at warn. (A client made later
  // still uses it.)
  void warn_of_unused_upstreams();
  void request_shutdown();
  asio::awaitable<void> keep_registered();
  // QoS overrides from Consul KV: one blocking query on the service's prefix for all its
  // operations (one per key would hold a connection to the agent each). The watch and
  // apply_overrides() run on executor 0 only, as does the state below.
  asio::awaitable<void> watch_overrides();
  // Applies what override_entries says to every declared operation; true when some
  // operation's QoS changed (the registration's Meta must follow).
  bool apply_overrides();
  bool apply_override(const DeclaredOperation& operation, const std::string& key,
                      const consul::KvEntry* entry);
  std::string override_prefix() const { return "coromesh/qos/" + config.name + "/"; }
  struct OverrideState {
    std::optional<consul::KvEntry> seen;  // the value last applied or refused
    bool overridden = false;              // an override runs (not the declared QoS)
  };
  std::vector<consul::KvEntry> override_entries;  // the prefix's keys, last answer
  std::map<std::string, OverrideState> override_states;
  std::map<std::string, std::uint64_t> unmatched_overrides;  // key -> ModifyIndex warned of
  // Sends the registration again (the Meta shows the QoS in force); on executor 0.
  void refresh_registration() {
    if (registrar) {
      registrar->update(registration());
    }
  }
  std::string override_key(const DeclaredOperation& operation) const {
    return override_prefix() +
           (operation.side == "client" ? "client/" + operation.name : operation.name);
  }
  static std::string meta_key(const DeclaredOperation& operation) {
    return (operation.side == "client" ? "qos_client_" : "qos_") + operation.name;
  }
  asio::awaitable<void> shutdown_sequence();
  asio::awaitable<void> let_cut_off_requests_unwind();
  static void log_component_failure(const ServiceComponent& component, std::string_view step,
                                    const std::exception& error) {
    log::error(
        "service.component_failed",
        {{"component", std::string(component.name())}, {"step", step}, {"error", error.what()}});
  }
  void wait_for_signals();
};

void Service::Impl::add_builtin_routes() {
  auto has = [&](std::string_view path) {
    return router.match(http::Verb::get, path).route != nullptr;
  };
  if (!has("/health")) {
    router.add(http::Verb::get, "/health", "health",
               [this](http::RequestContext&) -> asio::awaitable<http::Response> {
                 if (shutting_down.load()) {
                   co_return http::make_error_response(http::Status::service_unavailable,
                                                       "shutting_down",
                                                       "the service is shutting down");
                 }
                 co_return http::make_json_response(http::Status::ok, R"({"status":"passing"})");
               });
  }
  if (!has("/metrics")) {
    router.add(http::Verb::get, "/metrics", "metrics",
               [this](http::RequestContext&) -> asio::awaitable<http::Response> {
                 http::Response res{http::Status::ok, 11};
                 res.set(http::Field::content_type,
                         std::string(metrics::MetricsRegistry::kContentType));
                 res.body() = metrics.render();
                 res.prepare_payload();
                 co_return res;
               });
  }
}

consul::ServiceRegistration Service::Impl::registration() const {
  consul::ServiceRegistration reg;
  reg.id = config.instance_id_for(server->port());
  reg.name = config.name;
  reg.tags = config.tags;
  if (std::find(reg.tags.begin(), reg.tags.end(), "metrics") == reg.tags.end()) {
    reg.tags.emplace_back("metrics");  // what the Prometheus consul_sd job selects on
  }
  reg.address = config.advertised_address();
  reg.port = server->port();
  reg.meta["metrics_path"] = "/metrics";
  // Where /metrics is served even when a shaper registers another port (a sidecar's
  // public mTLS port): the Prometheus job scrapes this port when it is present.
  reg.meta["metrics_port"] = std::to_string(admin_server ? admin_server->port() : server->port());
  reg.meta["coromesh_version"] = std::string(coromesh::version());
  std::string operations;
  for (const auto& route : router.routes()) {
    if (route->operation == "health" || route->operation == "metrics") {
      continue;
    }
    operations += (operations.empty() ? "" : ",") + route->operation;
  }
  if (!operations.empty()) {
    reg.meta["operations"] = operations;
  }
  std::vector<std::shared_ptr<const DeclaredOperation>> sides;
  {
    const std::lock_guard lock(declared_mutex);
    sides = declared;
  }
  if (!sides.empty()) {
    // Where an operator puts live overrides (one key per operation below it, and the
    // client side's below client/).
    reg.meta["qos_overrides"] = "coromesh/qos/" + config.name + "/";
  }
  for (const auto& operation : sides) {
    // Consul Meta keys allow [A-Za-z0-9_-] and 128 characters; operation names are C++
    // identifiers, so only the length needs watching.
    const std::string key = meta_key(*operation);
    if (key.size() <= 128) {
      reg.meta[key] = qos::summarize(operation->current());
    }
  }
  auto check_host = reg.address.empty() ? std::string("127.0.0.1") : reg.address;
  if (check_host.find(':') != std::string::npos) {
    check_host = "[" + check_host + "]";
  }
  consul::HttpCheck check;
  if (admin_server) {
    // Native: the service port takes only Connect mTLS, which Consul's HTTP check cannot
    // speak; the admin port serves /health on loopback, where the agent runs.
    check_host = "127.0.0.1";
    reg.connect_native = true;
  }
  check.url = "http://" + check_host + ":" +
              std::to_string(admin_server ? admin_server->port() : reg.port) + "/health";
  check.interval = std::chrono::duration_cast<std::chrono::milliseconds>(config.check_interval);
  check.timeout = std::min<std::chrono::milliseconds>(check.interval, 5s);
  check.deregister_critical_service_after = 1min;
  reg.check = check;
  for (const auto& shape : registration_shapers) {
    shape(reg);
  }
  return reg;
}

void Service::Impl::warn_of_unused_upstreams() {
  const std::lock_guard lock(declared_mutex);
  std::string with_clients;
  for (const auto& [operation, slot] : clients) {
    with_clients += (with_clients.empty() ? "" : ",") + operation;
  }
  for (const auto& [operation, address] : config.upstreams) {
    if (!clients.contains(operation)) {
      log::warn(
          "config.upstream_unused",
          {{"upstream", operation},
           {"address", address.to_string()},
           {"clients", with_clients.empty() ? "(none)" : with_clients},
           {"reason", "--upstreams names an operation this service has no client for (yet)"}});
    }
  }
}

void Service::Impl::start() {
  if (started) {
    throw std::logic_error("Service::start() called twice");
  }
  started = true;
  add_builtin_routes();
  for (const auto& route : router.routes()) {
    route_metrics.push_back(&http_metrics.operation(route->operation));
  }
  unmatched_metrics = &http_metrics.operation("unmatched");

  http::ServerLimits limits;
  limits.max_header_bytes = config.http.max_header_bytes;
  limits.max_body_bytes = config.http.max_body_bytes;
  limits.header_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(config.http.header_read_timeout);
  limits.idle_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(config.http.idle_timeout);
  limits.max_connections = config.http.max_connections;
  server = std::make_unique<http::Server>(pool, router, limits, this);
  server->listen(config.bind_address, config.port);
  if (native) {
    start_native(limits);
  }
  server->start();
  {
    const std::lock_guard lock(declared_mutex);
    for (const auto& [name, discovery] : discovered) {
      watch_endpoints(discovery);
    }
    watching_endpoints = true;
  }
  for (const auto& component : components) {
    component->start(pool);
  }
  warn_of_unused_upstreams();

  if (config.consul_register) {
    consul::RegistrarOptions registrar_options;
    registrar_options.resync_interval =
        std::chrono::duration_cast<std::chrono::milliseconds>(config.consul_resync_interval);
    registrar =
        std::make_unique<consul::Registrar>(*consul_client, registration(), registrar_options);
    runtime::spawn(pool.executor(0), keep_registered(), "consul.registrar");
    const std::lock_guard lock(declared_mutex);
    watching = true;
    if (!declared.empty()) {
      overrides_watched = true;
      runtime::spawn(pool.executor(0), watch_overrides(), "qos.overrides");
    }
  }
  wait_for_signals();
  log::info("service.started",
            {{"service", config.name},
             {"id", config.instance_id_for(server->port())},
             {"port", server->port()},
             {"threads", pool.size()},
             {"consul", config.consul_register ? config.consul.to_string() : std::string("off")}});
  pool.start();
}

asio::awaitable<void> Service::Impl::keep_registered() {
  if (native) {
    // Nobody is sent here before this instance can present its certificate.
    try {
      co_await native->ready();
    } catch (const connect::CertificateSourceStopped& e) {
      // A shutdown before Consul issued the certificate stops its source: nothing to
      // register. Outside a shutdown, the source failed: this instance can never serve.
      if (shutting_down.load()) {
        log::info("service.not_registered", {{"why", "shut down before its certificate"}});
        co_return;
      }
      log::error("service.certificate_unavailable", {{"error", e.what()}});
      exit_code = 1;
      request_shutdown();
      co_return;
    }
  }
  try {
    co_await registrar->run();
  } catch (const consul::ConsulError& e) {
    // The agent refused the registration itself: retrying cannot fix that.
    log::error("service.registration_refused", {{"error", e.what()}});
    exit_code = 1;
    request_shutdown();
  }
}

asio::awaitable<void> Service::Impl::watch_overrides() {
  // Consul filters a recursive answer down to the keys the token may read, so a token
  // without read on the prefix sees no overrides rather than an error. Reading the
  // prefix's own key once says so (and counts the refusal in the Consul metrics).
  try {
    co_await consul_client->kv_get(override_prefix(), {});
  } catch (const consul::ConsulError& e) {
    if (e.status() == 403) {
      log::error("qos.overrides_unreadable", {{"prefix", override_prefix()}, {"error", e.what()}});
    }
  } catch (const std::exception&) {
    // The agent is away or the service stops: the watch below retries or ends.
  }
  auto on_change = [this](const std::vector<consul::KvEntry>& entries) {
    override_entries = entries;
    if (apply_overrides()) {
      refresh_registration();
    }
  };
  co_await consul::watch_kv_prefix(*consul_client, override_prefix(), on_change);
}

bool Service::Impl::apply_overrides() {
  std::vector<std::shared_ptr<const DeclaredOperation>> operations;
  {
    const std::lock_guard lock(declared_mutex);
    operations = declared;
  }
  std::map<std::string_view, const consul::KvEntry*> unmatched;
  for (const auto& entry : override_entries) {
    unmatched.emplace(entry.key, &entry);
  }
  bool changed = false;
  for (const auto& operation : operations) {
    const std::string key = override_key(*operation);
    const consul::KvEntry* entry = nullptr;
    if (auto found = unmatched.find(key); found != unmatched.end()) {
      entry = found->second;
      unmatched.erase(found);
    }
    changed = apply_override(*operation, key, entry) || changed;
  }
  // A key no operation has is most likely a typo, which would otherwise change nothing
  // without a word: warned of once per value (a client made later still picks it up).
  std::map<std::string, std::uint64_t> warned;
  for (const auto& [key, entry] : unmatched) {
    if (key.ends_with('/')) {
      continue;  // a folder, as Consul's UI makes them
    }
    auto before = unmatched_overrides.find(std::string(key));
    if (before == unmatched_overrides.end() || before->second != entry->modify_index) {
      log::warn("qos.override_unmatched",
                {{"key", std::string(key)},
                 {"error", "no operation of this service has this key (" + override_prefix() +
                               "<operation> for a served one, " + override_prefix() +
                               "client/<operation> for a client)"}});
    }
    warned.emplace(std::string(key), entry->modify_index);
  }
  unmatched_overrides = std::move(warned);
  return changed;
}

bool Service::Impl::apply_override(const DeclaredOperation& operation, const std::string& key,
                                   const consul::KvEntry* entry) {
  auto& state = override_states[key];
  if (entry == nullptr) {
    state.seen.reset();
    if (!state.overridden) {
      return false;
    }
    operation.apply(operation.declared);
    state.overridden = false;
    log::info("qos.override_removed",
              {{"operation", operation.name}, {"side", operation.side}, {"key", key}});
    return true;
  }
  if (state.seen == *entry) {
    return false;  // another key of the prefix changed
  }
  state.seen = *entry;
  // Nothing thrown here may end the watch: a refused value keeps the running policies
  // and the next change of the key is read as usual.
  try {
    const auto set =
        qos::apply_override(operation.declared, entry->value, operation.retries_without_opt_in);
    state.overridden = true;
    if (set == operation.current()) {
      // The key was rewritten to the policies already running (respaced, reordered, or
      // equal to the declaration): nothing to swap, log or re-register.
      return false;
    }
    operation.apply(set);
    log::info("qos.override_applied", {{"operation", operation.name},
                                       {"side", operation.side},
                                       {"key", key},
                                       {"qos", qos::summarize(set)}});
    return true;
  } catch (const std::exception& e) {
    log::warn("qos.override_refused", {{"operation", operation.name},
                                       {"side", operation.side},
                                       {"key", key},
                                       {"error", e.what()}});
    return false;
  }
}

void Service::Impl::wait_for_signals() {
  signals.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) {
      return;
    }
    if (signalled) {
      log::warn("service.forced_exit", {{"signal", signo}});
      log::flush(std::chrono::milliseconds(500));  // _Exit skips the atexit flush
      std::_Exit(130);
    }
    signalled = true;
    log::info("service.signal", {{"signal", signo}});
    request_shutdown();
    wait_for_signals();
  });
}

void Service::Impl::request_shutdown() {
  if (shutting_down.exchange(true)) {
    return;
  }
  runtime::spawn(pool.executor(0), shutdown_sequence(), "service.shutdown");
}

asio::awaitable<void> Service::Impl::shutdown_sequence() {
  auto started_at = std::chrono::steady_clock::now();
  log::info("service.shutdown.begin", {{"in_flight", server->in_flight()}});
  // Phase 1: leave the mesh first, so no new traffic is routed here while we drain.
  if (registrar) {
    co_await registrar->shutdown();
  }
  server->stop_accepting();
  if (admin_server) {
    admin_server->stop_accepting();
  }
  // A component that throws is logged and passed over: the sequence must reach the
  // pool's terminate() below, without which wait() never returns.
  for (const auto& component : components) {
    try {
      co_await component->stop_accepting();
    } catch (const std::exception& e) {
      log_component_failure(*component, "stop_accepting", e);
    }
  }
  // Phase 2: let in-flight requests finish, then cancel what is left.
  auto grace = std::chrono::duration_cast<std::chrono::milliseconds>(config.shutdown_grace);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  auto cut_off = co_await server->drain(grace);
  for (const auto& component : components) {
    try {
      cut_off += co_await component->drain(deadline);
    } catch (const std::exception& e) {
      log_component_failure(*component, "drain", e);
    }
  }
  if (admin_server) {
    cut_off += co_await admin_server->drain(std::chrono::milliseconds(200));
  }
  if (cut_off > 0) {
    co_await let_cut_off_requests_unwind();
  }
  // The calls that needed them have finished or been cut off: stop following Consul.
  {
    const std::lock_guard lock(declared_mutex);
    for (const auto& [name, discovery] : discovered) {
      discovery.stop->emit(asio::cancellation_type::terminal);
    }
  }
  if (native) {
    native->stop();
  }
  consul_client->http_client().close_idle();
  log::info("service.shutdown.done",
            {{"cut_off", cut_off}, {"took", std::chrono::steady_clock::now() - started_at}});
  boost::system::error_code ignored;
  signals.cancel(ignored);
  pool.terminate();
}

// The drain only signals the requests it cuts off; their handlers end as their cancelled
// operations complete, which the pool runs after this. Terminating the pool first would
// destroy those frames unresumed (destroy_abandoned_work): the QoS chains would never see
// the cancellation (coromesh_qos_calls_total would not count the call at all, as
// `cancelled` or anything else). A handler that ignores its cancellation is not waited
// for past a short bound.
asio::awaitable<void> Service::Impl::let_cut_off_requests_unwind() {
  constexpr auto kBound = 500ms;
  const auto until = std::chrono::steady_clock::now() + kBound;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto unwinding = [this] {
    return server->in_flight() > 0 || (admin_server && admin_server->in_flight() > 0);
  };
  while (unwinding() && std::chrono::steady_clock::now() < until) {
    timer.expires_after(2ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  if (unwinding()) {
    log::warn("service.shutdown.still_running",
              {{"requests", server->in_flight() + (admin_server ? admin_server->in_flight() : 0)},
               {"waited", kBound}});
  }
}

void Service::Impl::start_native(const http::ServerLimits& limits) {
  server->enable_tls(native->server_tls(limits.header_timeout));
  // The same /health and /metrics as the mTLS port (a service's own /health included).
  for (const char* path : {"/health", "/metrics"}) {
    const auto* route = router.match(http::Verb::get, path).route;
    admin_router.add(http::Verb::get, path, route->operation, route->handler);
  }
  admin_server = std::make_unique<http::Server>(pool, admin_router, limits);
  admin_server->listen("127.0.0.1", config.admin_port);
  admin_server->start();
  native->start();
  log::info("service.connect_native", {{"service", config.name},
                                       {"admin_port", admin_server->port()},
                                       {"mtls_port", server->port()}});
}

void Service::Impl::watch_endpoints(const Discovery& discovery) {
  // Holds the upstream: the watch's frame refers to it. Spawned on executor 0 (the agent
  // client's), where the shutdown emits `stop`.
  asio::post(pool.executor(0), [this, discovery] {
    asio::co_spawn(
        pool.executor(0), [upstream = discovery.upstream] { return upstream->run(); },
        asio::bind_cancellation_slot(discovery.stop->slot(),
                                     runtime::LogEscapedException{"service.endpoint_watch"}));
  });
}

std::shared_ptr<DiscoveredUpstream> Service::discovered_upstream(const std::string& service) {
  const std::lock_guard lock(impl_->declared_mutex);
  if (auto it = impl_->discovered.find(service); it != impl_->discovered.end()) {
    return it->second.upstream;
  }
  DiscoveredUpstreamOptions options{.service = service};
  // Validated when the configuration was read.
  connect::parse_balance_policy(impl_->config.balance, options.balance.policy);
  const auto policy = options.balance.policy;
  if (impl_->native) {
    options.kind = connect::EndpointKind::connect;
    options.tls = impl_->native->client_tls(service);
  }
  Impl::Discovery discovery{
      std::make_shared<DiscoveredUpstream>(*impl_->consul_client, std::move(options)),
      std::make_shared<asio::cancellation_signal>()};
  log::info("service.discovery", {{"service", service},
                                  {"endpoints", impl_->native ? "connect (mTLS)" : "plain"},
                                  {"balance", std::string(connect::to_string(policy))}});
  if (impl_->watching_endpoints) {
    impl_->watch_endpoints(discovery);
  }
  return impl_->discovered.emplace(service, std::move(discovery)).first->second.upstream;
}

Service::Service(const config::ServiceConfigOptions& options, int argc, const char* const* argv)
    : Service(config::service_config_or_exit(argc, argv, options)) {
  impl_->from_command_line = true;
}

Service::Service(config::ServiceConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {
  if (impl_->config.mesh == config::MeshMode::native) {
    impl_->native = std::make_unique<detail::ConnectNative>(
        impl_->pool.executor(0), *impl_->consul_client, impl_->config.name, impl_->metrics);
  }
}

Service::~Service() {
  if (impl_->started) {
    request_shutdown();
    impl_->pool.join();
  }
  // Frames cut off by the shutdown (a request still in its handler, one queued in a
  // bulkhead) point at the router's handlers, the QoS policies, the clients and the
  // metrics: they must unwind while those still exist, i.e. before Impl's members go.
  impl_->pool.destroy_abandoned_work();
}

http::Router& Service::router() {
  // The io threads read the routes without a lock once the service has started (and the
  // per-route metrics are sized then): a route added later would race them.
  if (impl_->started) {
    throw std::logic_error("Service::route() after start(): the routes are fixed by then");
  }
  return impl_->router;
}
metrics::MetricsRegistry& Service::metrics() {
  return impl_->metrics;
}
void Service::add_component(std::shared_ptr<ServiceComponent> component) {
  if (impl_->started) {
    throw std::logic_error("Service::add_component() after start()");
  }
  if (!component) {
    throw std::invalid_argument("Service::add_component: null component");
  }
  impl_->components.push_back(std::move(component));
}

void Service::shape_registration(std::function<void(consul::ServiceRegistration&)> shaper) {
  if (impl_->started) {
    throw std::logic_error("Service::shape_registration() after start()");
  }
  impl_->registration_shapers.push_back(std::move(shaper));
}

consul::AgentClient& Service::consul_agent() {
  return *impl_->consul_client;
}

QosMetrics& Service::qos_metrics() {
  return impl_->qos_metrics;
}

qos::BuildOptions Service::server_build_options(const std::string& operation) {
  return qos::BuildOptions{.clock = nullptr,
                           .observer = impl_->qos_metrics.observer(operation, "server"),
                           .classify = classify_served_fault};
}

qos::RejectionHook Service::server_rejection_hook(const std::string& operation) {
  return impl_->qos_metrics.rejection_hook(operation, "server");
}

void Service::add_declared(DeclaredOperation operation,
                           std::function<std::shared_ptr<const qos::PolicyObjects>()> objects) {
  if (impl_->started) {
    throw std::logic_error("Service::serve() after start()");
  }
  impl_->qos_metrics.export_state(operation.name, "server", std::move(objects));
  const std::lock_guard lock(impl_->declared_mutex);
  impl_->declared.push_back(std::make_shared<const DeclaredOperation>(std::move(operation)));
}

void* Service::find_or_add_client(const std::string& operation, const std::type_info& type,
                                  const std::string& target,
                                  const std::function<ClientEntry()>& make) {
  void* result = nullptr;
  bool publish_now = false;
  bool start_watch = false;
  {
    const std::lock_guard lock(impl_->declared_mutex);
    if (auto it = impl_->clients.find(operation); it != impl_->clients.end()) {
      const auto& slot = it->second;
      if (slot.type != std::type_index(type)) {
        throw std::logic_error("Service::client: two different operations are named '" + operation +
                               "'");
      }
      if (slot.target != target) {
        throw std::logic_error("Service::client(" + operation + "): already made for " +
                               slot.target + ", asked again for " + target +
                               "; a service has one client per operation");
      }
      return slot.client.get();
    }
    ClientEntry entry = make();
    result = entry.client.get();
    impl_->clients.emplace(
        operation, Impl::ClientSlot{std::move(entry.client), std::type_index(type), target});
    impl_->declared.push_back(std::make_shared<const DeclaredOperation>(std::move(entry.declared)));
    publish_now = impl_->watching;
    start_watch = publish_now && !std::exchange(impl_->overrides_watched, true);
  }
  if (publish_now) {
    // Made after start-up: apply its override key's value (the prefix's watch holds it,
    // or is started for this first operation) and publish its QoS from now on, on
    // executor 0 where the registrar and the watch run.
    asio::post(impl_->pool.executor(0), [impl = impl_.get(), start_watch] {
      if (start_watch) {
        runtime::spawn(impl->pool.executor(0), impl->watch_overrides(), "qos.overrides");
      } else {
        impl->apply_overrides();
      }
      impl->refresh_registration();
    });
  }
  return result;
}

const config::Address* Service::configured_upstream(const std::string& operation) const {
  const auto& upstreams = impl_->config.upstreams;
  const auto it = upstreams.find(operation);
  return it == upstreams.end() ? nullptr : &it->second;
}

void Service::no_upstream(const std::string& operation) const {
  const std::string detail = "--upstreams (flag or COROMESH_UPSTREAMS): no upstream for '" +
                             operation +
                             "', and its declaration names no service to find in "
                             "Consul (served_by); give " +
                             operation + "=<host:port>";
  if (impl_->from_command_line) {
    std::cerr << "config error: " << detail << "\n";
    std::exit(2);
  }
  throw config::ConfigError(detail);
}

namespace detail {

qos::Deadline incoming_deadline(const http::RequestContext& context) {
  const auto header = context.request.find(qos::kDeadlineHeader);
  if (header == context.request.end()) {
    return {};
  }
  const auto parsed = qos::parse_deadline_header(header->value());
  if (!parsed) {
    throw http::HttpError(http::Status::bad_request, "invalid_deadline",
                          std::string(qos::kDeadlineHeader) + ": " + std::string(parsed.error));
  }
  return parsed.deadline;
}

http::Response rejection_response(const qos::QosRejected& rejected) {
  boost::json::object body{{"error", qos::to_string(rejected.reason())},
                           {"reason", rejected.what()},
                           {"policy", rejected.policy()}};
  auto response = http::make_json_response(static_cast<http::Status>(rejected.http_status()),
                                           boost::json::serialize(body));
  if (rejected.reason() == qos::Reason::rate_limited) {
    response.set(http::Field::retry_after, "1");
  }
  return response;
}

http::Response upstream_error_response(const RemoteError& error) {
  return http::make_error_response(static_cast<http::Status>(upstream_error_status(error.status())),
                                   error.code(), error.what());
}

http::Response dependency_refused_response(const DependencyRefused& refused) {
  const auto& refusal = refused.refusal();
  boost::json::object body{{"error", qos::to_string(refusal.reason())},
                           {"reason", refused.what()},
                           {"policy", refusal.policy()}};
  return http::make_json_response(static_cast<http::Status>(refused.http_status()),
                                  boost::json::serialize(body));
}

http::Response transport_error_response(const http::ClientError& error) {
  const auto answer = unanswered_call_status(error);
  return http::make_error_response(static_cast<http::Status>(answer.status), answer.code,
                                   error.what());
}

namespace {

// Whether a client's line has told of `cause` already: a refusal by its policies, which
// its rejection hook logs (`qos.rejected`).
bool told_by_its_client(const std::exception_ptr& cause) noexcept {
  try {
    std::rethrow_exception(cause);
  } catch (const qos::QosRejected& refusal) {
    return refusal.notified_by() != nullptr;
  } catch (const DependencyRefused& refused) {
    return refused.refusal().notified_by() != nullptr;
  } catch (...) {
    return false;
  }
}

// The class of the failed call behind an answer (qos/fault.hpp): a refusal of the
// handler's own call as the refusal it is, a call that got no answer as transport or
// timeout, a callee's error by its status.
qos::FaultClass fault_of(const std::exception_ptr& cause) noexcept {
  try {
    std::rethrow_exception(cause);
  } catch (const DependencyRefused& refused) {
    return qos::classify_fault(std::make_exception_ptr(refused.refusal())).kind;
  } catch (...) {
    return classify_service_fault(cause).kind;
  }
}

// The one line for a 5xx answered for a failed call (service.hpp).
void log_failed_answer(const http::RequestContext& context, unsigned status, std::string_view code,
                       std::string_view reason, const std::exception_ptr& cause) {
  if (!log::enabled(log::Level::warn)) {
    return;
  }
  const std::string_view operation =
      context.route != nullptr ? std::string_view(context.route->operation) : context.path;
  std::string key(operation);
  key.append(1, '\x1f').append(std::to_string(status)).append(1, '\x1f').append(code);
  log::warn_limited("service.request_failed", key,
                    {{"operation", operation},
                     {"status", status},
                     {"fault", qos::to_string(fault_of(cause))},
                     {"error", code},
                     {"reason", reason},
                     {"trace_id", context.trace_id}});
}

}  // namespace

http::Response dependency_error_response(const http::RequestContext& context,
                                         const std::exception_ptr& error, bool logged) {
  std::optional<http::Response> response;
  std::string code;
  std::string why;
  try {
    std::rethrow_exception(error);
  } catch (const http::HttpError& answer) {
    // The handler's own answer, for which the server writes the response.
    const auto status = static_cast<unsigned>(answer.status());
    const std::exception_ptr& cause = answer.cause() ? answer.cause() : error;
    if (status >= 500 && !logged && !told_by_its_client(cause)) {
      log_failed_answer(context, status, answer.code(), answer.reason(), cause);
    }
    throw;
  } catch (const qos::QosRejected& refusal) {
    const DependencyRefused refused(refusal);
    response.emplace(dependency_refused_response(refused));
    code = qos::to_string(refusal.reason());
    why = refused.what();
  } catch (const DependencyRefused& refused) {
    response.emplace(dependency_refused_response(refused));
    code = qos::to_string(refused.refusal().reason());
    why = refused.what();
  } catch (const RemoteError& remote) {
    response.emplace(upstream_error_response(remote));
    code = remote.code();
    why = remote.what();
  } catch (const http::ClientError& unanswered) {
    response.emplace(transport_error_response(unanswered));
    code = unanswered_call_status(unanswered).code;
    why = unanswered.what();
  }
  if (!logged && !told_by_its_client(error)) {
    log_failed_answer(context, response->result_int(), code, why, error);
  }
  return std::move(*response);
}

http::Response route_dependency_error_response(const http::RequestContext& context,
                                               const std::exception_ptr& error) {
  return dependency_error_response(context, error);
}

}  // namespace detail
runtime::IoPool& Service::pool() {
  return impl_->pool;
}
const config::ServiceConfig& Service::config() const {
  return impl_->config;
}
std::uint16_t Service::port() const {
  return impl_->server ? impl_->server->port() : 0;
}
std::string Service::instance_id() const {
  return impl_->config.instance_id_for(port());
}

void Service::start() {
  impl_->start();
}
void Service::request_shutdown() {
  impl_->request_shutdown();
}

int Service::wait() {
  impl_->pool.join();
  if (impl_->started) {
    // The frames the shutdown cut off but could not unwind (a handler deaf to its
    // cancellation) go now, not in ~Service: they refer to what the handlers use, and a
    // caller destroys its own objects declared after the Service (frontend/main.cpp's
    // Calculator) between run() and ~Service. The service's members still exist here.
    impl_->pool.destroy_abandoned_work();
  }
  return impl_->exit_code.load();
}

int Service::run() {
  try {
    start();
  } catch (const std::exception& e) {
    log::error("service.start_failed", {{"service", impl_->config.name}, {"error", e.what()}});
    return 1;
  }
  return wait();
}

}  // namespace coromesh
