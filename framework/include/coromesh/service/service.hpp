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
// Declared operations (service/operation.hpp) are served with `serve(op, fn)`: the
// route and binding, the server-side QoS chain, the incoming deadline and trace, the
// rejections as 429/503/504 with a JSON error, the metric families (service/qos_metrics.hpp),
// the operation's QoS in the Consul Meta key `qos_<operation>`, and a live override
// watch on the Consul KV key `coromesh/qos/<service>/<operation>` (format in
// qos/policy_runtime.hpp; a bad value is refused with a `qos.override_refused` log line
// and the running policies stay; deleting the key restores the declaration). The Meta
// shows the QoS in force: it is re-sent after an override and after its removal.
//
// Mesh modes (config::MeshMode, --mesh): in `sidecar` mode (the default) the service
// speaks plain HTTP and a sidecar owns the public mTLS port. In `native` mode the port
// itself is Connect mTLS (leaf and roots from Consul, callers authorized by intentions,
// a refused peer closed, logged and counted in coromesh_connect_native_handshakes_total),
// the registration carries Connect.Native, typed clients of operations found in Consul
// dial their Connect endpoints over mTLS, and /health and /metrics are also served in
// plain HTTP on a loopback admin port (--admin-port): Consul's HTTP check cannot present
// a client certificate, and Prometheus scrapes Meta `metrics_port`, which names it. The
// instance registers only once its first leaf has arrived.
//
// Callers get one typed client per operation from `client(op)`: the client-side chain,
// its metrics (side="client"), its policies in the Meta key `qos_client_<operation>` and
// its own override key `coromesh/qos/<service>/client/<operation>`.
//
// Threads: declare routes and serve() before run()/start(); client() from any thread,
// before or after start(); everything else is internal.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>

#include "coromesh/config/service_config.hpp"
#include "coromesh/consul/types.hpp"
#include "coromesh/http/router.hpp"
#include "coromesh/http/typed_handler.hpp"
#include "coromesh/qos/operation_qos.hpp"
#include "coromesh/service/component.hpp"
#include "coromesh/service/discovered_upstream.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/operation.hpp"
#include "coromesh/service/operation_client.hpp"
#include "coromesh/service/remote_error.hpp"

namespace coromesh::metrics {
class MetricsRegistry;
}  // namespace coromesh::metrics
namespace coromesh::runtime {
class IoPool;
}
namespace coromesh::consul {
class AgentClient;
}

namespace coromesh {

class QosMetrics;

namespace detail {
// What a handler answers for an error of its own call that escaped it: a QosRejected or
// DependencyRefused as dependency_refused_response, a RemoteError as
// upstream_error_response, a http::ClientError as transport_error_response. An
// http::HttpError, the handler's own answer, is rethrown for the server to answer, as is
// any other exception.
//
// Every 5xx answered this way, the handler's own HttpError included, is one line at
// warn, rate limited per operation, status and error code:
// `service.request_failed operation=… status=502 fault=transport error=<code>
// reason="…" trace_id=…`, else a 502/503/504 would leave no trace in this service's log.
// `fault` is the class (qos/fault.hpp) of the failed call: the HttpError's cause() when
// it has one (a handler that turned its call's failure into its own answer), else the
// error itself. No line when `logged` (the served operation's chain has qos::log, which
// wrote its own) or when the failure (or the HttpError's cause) is a refusal its client's
// rejection hook has logged (`qos.rejected`). A 4xx is the caller's own error: no line.
http::Response dependency_error_response(const http::RequestContext& context,
                                         const std::exception_ptr& error, bool logged = false);
// The same as a http::HandlerErrorAnswer, for Service::route<Arg> (no chain of its own).
http::Response route_dependency_error_response(const http::RequestContext& context,
                                               const std::exception_ptr& error);
}  // namespace detail

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
  // body (other methods); see http/typed_handler.hpp. An error of the handler's own call
  // (a typed client's) that escapes it is answered as serve() answers it: the callee's
  // error 502/503/504, a refusal by that call's QoS 503/504, no answer 502/503/504 (see
  // detail::dependency_error_response); it is upstream trouble, not this handler's bug.
  // Those answers, and a 5xx HttpError the handler throws, are logged as serve() logs
  // them (service.request_failed).
  template <class Arg, class F>
  Service& route(http::Verb method, std::string_view path, std::string operation, F f) {
    router().add(
        method, path, std::move(operation),
        http::typed_handler<Arg>(method, std::move(f), &detail::route_dependency_error_response));
    return *this;
  }
  // Serves a declared operation with `fn(Arg)` or `fn(Arg, const CallContext&)`
  // returning awaitable<Result>. Throws std::invalid_argument if the declared QoS cannot
  // work (it compiled, so only a hand-built Operation gets here).
  template <class Op, class F>
  Service& serve(const Op& op, F fn);

  // The typed client of a declared operation, reached at `upstream` (the caller's
  // sidecar upstream listener), on this service's io threads and metrics. Owned by the
  // service, one per operation: asking again returns the same client. Asking again with
  // another upstream, or for another operation of the same name, throws
  // std::logic_error. Thread-safe.
  template <class Op>
  OperationClient<Op>& client(const Op& op, http::Destination upstream) {
    std::string target = upstream.host + ":" + std::to_string(upstream.port);
    return make_client(op, OperationClientOptions{.upstream = std::move(upstream)},
                       std::move(target));
  }

  // The typed client of a declared operation, reached
  // - at the upstream configured for the operation's name (--upstreams add=127.0.0.1:9191,
  //   COROMESH_UPSTREAMS): a sidecar's listener, which always wins; else
  // - at the instances of the service its declaration names (served_by), found in Consul
  //   and balanced per call (discovered_upstream.hpp): in sidecar mode its plain
  //   registrations, in native mode its Connect endpoints over mTLS.
  // Neither is a configuration error: a service built from argv prints it and exits 2,
  // one built from a ServiceConfig throws config::ConfigError.
  template <class Op>
  OperationClient<Op>& client(const Op& op) {
    const std::string name(op.name);
    if (const config::Address* address = configured_upstream(name)) {
      return client(op, http::Destination{address->host, address->port, nullptr});
    }
    if (op.service.empty()) {
      no_upstream(name);
    }
    const std::string service(op.service);
    return make_client(op, OperationClientOptions{.discovered = discovered_upstream(service)},
                       "consul:" + service);
  }

  // Adds a raw handler.
  Service& route(http::Verb method, std::string_view path, std::string operation,
                 http::Handler handler) {
    router().add(method, path, std::move(operation), std::move(handler));
    return *this;
  }

  // Seams for services that are more than HTTP handlers (the sidecar, Connect-native
  // services). All before start():
  //
  // A part with listeners or background work of its own, started before the service
  // registers and taken through its two-phase shutdown (service/component.hpp).
  void add_component(std::shared_ptr<ServiceComponent> component);
  // Edits the Consul registration each time it is built (at start-up, and again after a
  // live QoS override): e.g. a sidecar registers as Kind connect-proxy on its public
  // port. It runs after the service has filled in its own fields (ID, name, tags, Meta
  // including `metrics_port`, the HTTP check on /health).
  void shape_registration(std::function<void(consul::ServiceRegistration&)> shaper);
  // The client of the Consul agent at --consul, on the pool's executor 0 (call it from
  // coroutines there). Exists whether or not the service registers itself.
  consul::AgentClient& consul_agent();

  // Before start() only (std::logic_error after it), as every route() and serve().
  http::Router& router();
  metrics::MetricsRegistry& metrics();
  QosMetrics& qos_metrics();
  runtime::IoPool& pool();
  const config::ServiceConfig& config() const;

  // Serves until SIGINT/SIGTERM, then shuts down gracefully; returns the exit code.
  int run();

  // For tests and embedding: start() binds, registers and serves on the pool's
  // threads and returns; request_shutdown() starts the graceful shutdown (any
  // thread); wait() blocks until it has finished and returns the exit code. When run()
  // or wait() returns, no handler frame is left (one its cancellation did not end is
  // destroyed then): what the handlers use may be destroyed before the Service.
  void start();
  void request_shutdown();
  int wait();
  std::uint16_t port() const;
  // The Consul service ID this instance registers under.
  std::string instance_id() const;

 private:
  // What the Consul registration and the KV override watch need of one side of a
  // declared operation.
  struct DeclaredOperation {
    std::string name;
    std::string side;  // "server" or "client"
    qos::PolicySet declared;
    std::function<void(const qos::PolicySet&)> apply;  // throws std::invalid_argument
    std::function<qos::PolicySet()> current;           // the policies in force
    // Whether a retry without qos::retry{.non_idempotent = true} can retry anything here:
    // not on a POST's server side (its handler ran), where an override giving it one is
    // refused, as the compiler refuses the declaration (qos::apply_override).
    bool retries_without_opt_in = true;
  };
  struct ClientEntry {
    std::shared_ptr<void> client;
    DeclaredOperation declared;
  };
  qos::BuildOptions server_build_options(const std::string& operation);
  qos::RejectionHook server_rejection_hook(const std::string& operation);
  void add_declared(DeclaredOperation operation,
                    std::function<std::shared_ptr<const qos::PolicyObjects>()> objects);
  template <class Op>
  OperationClient<Op>& make_client(const Op& op, OperationClientOptions options,
                                   std::string target) {
    using Client = OperationClient<Op>;
    const std::string name(op.name);
    void* found = find_or_add_client(name, typeid(Client), target, [&]() -> ClientEntry {
      options.metrics = &qos_metrics();
      auto made = std::make_shared<Client>(op, detail::executors_of(pool()), options);
      auto* raw = made.get();
      return ClientEntry{.client = std::move(made),
                         .declared = DeclaredOperation{
                             .name = name,
                             .side = "client",
                             .declared = raw->qos().declared(),
                             .apply = [raw](const qos::PolicySet& set) { raw->qos().apply(set); },
                             .current = [raw] { return raw->qos().current(); },
                             // A client's retry sends a POST again when it never
                             // reached the callee (qos/fault.hpp): a retry that retries.
                             .retries_without_opt_in = true}};
    });
    return *static_cast<Client*>(found);
  }
  // The client made for `operation`, or the one `make` returns, now owned by the service.
  // `target` names where it calls ("host:port", "consul:<service>").
  void* find_or_add_client(const std::string& operation, const std::type_info& type,
                           const std::string& target, const std::function<ClientEntry()>& make);
  // The --upstreams entry for `operation`, or null.
  const config::Address* configured_upstream(const std::string& operation) const;
  // Reports an operation with neither an upstream nor a served_by (see client(op)).
  [[noreturn]] void no_upstream(const std::string& operation) const;
  // The service's instances in Consul, shared by every client calling it; watched from
  // start() on (at once when asked later) until the shutdown.
  std::shared_ptr<DiscoveredUpstream> discovered_upstream(const std::string& service);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

namespace detail {
// The incoming deadline (x-coromesh-deadline-ms); none without the header. Throws
// HttpError 400 invalid_deadline for a malformed one.
qos::Deadline incoming_deadline(const http::RequestContext& context);
// 429/503/504 {"error": <reason>, "reason": ..., "policy": ...}.
http::Response rejection_response(const qos::QosRejected& rejected);
// A callee's error seen by this service's own call: 504 for a timeout, 503 for overload
// and open circuits, 502 otherwise, with the callee's error code.
http::Response upstream_error_response(const RemoteError& error);
// A handler's own call refused by that call's QoS: 503 (504 for a deadline), the
// refusal's reason as the error.
http::Response dependency_refused_response(const DependencyRefused& refused);
// A call of this service's that got no answer: 504 deadline_exceeded for a timeout, 503
// discovery_unavailable when Consul had not answered about the callee yet, 503
// identity_unavailable when this service's own leaf had not arrived, 503 no_endpoint when
// Consul lists no passing instance of the callee, 502 upstream_unavailable otherwise.
http::Response transport_error_response(const http::ClientError& error);

// A served operation's fallback value goes through the check its handler's result goes
// through (Service::serve): a value JSON cannot carry (NaN, infinity) is the fallback's
// failure, thrown inside the chain (callee_failure, answered 500), not a fallback answer
// counted ok and then answered 500.
template <class R>
void check_fallback_value(const R& value) {
  try {
    http::check_serializable(value);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("the fallback's value: ") + e.what());
  }
}
}  // namespace detail

template <class Op, class F>
Service& Service::serve(const Op& op, F fn) {
  using Arg = typename Op::argument_type;
  using Result = typename Op::result_type;
  const std::string name(op.name);
  const qos::RejectionHook on_rejection = server_rejection_hook(name);
  auto operation_qos = std::make_shared<qos::OperationQos<Result>>(
      name, qos::to_policy_set(op.server),
      qos::fallback_of<Result>(op.server, &detail::check_fallback_value<Result>),
      server_build_options(name), on_rejection);
  add_declared({.name = name,
                .side = "server",
                .declared = operation_qos->declared(),
                .apply = [operation_qos](const qos::PolicySet& set) { operation_qos->apply(set); },
                .current = [operation_qos] { return operation_qos->current(); },
                .retries_without_opt_in = op.idempotent()},
               // Weak: the metrics hold this, and the chain's rejection hook holds the
               // metrics; a strong reference would make a cycle that is never freed.
               [weak = std::weak_ptr<qos::OperationQos<Result>>(operation_qos)] {
                 auto alive = weak.lock();
                 return alive ? alive->objects() : nullptr;
               });
  const http::Verb method = op.method;
  const bool idempotent = op.idempotent();
  router().add(
      op.method, op.path, name,
      [operation_qos, fn = std::move(fn), method, idempotent, refuse_late = on_rejection](
          http::RequestContext& context) -> boost::asio::awaitable<http::Response> {
        const qos::Deadline deadline = detail::incoming_deadline(context);
        if (deadline.is_set() && deadline.expired()) {
          // The caller has given up already: doing the work would only waste it.
          const qos::QosRejected late("deadline", qos::Reason::deadline_exceeded);
          if (refuse_late) {
            refuse_late(late.policy(), late.reason());
          }
          co_return detail::rejection_response(late);
        }
        // What every attempt needs, behind one pointer so the std::function
        // below holds it without allocating.
        struct Bound {
          const F& fn;
          const Arg arg;
          const CallContext call;
        };
        const Bound bound{fn, http::bind_request<Arg>(method, context),
                          CallContext{deadline, context.trace_id, &context}};
        typename qos::Chain<Result>::InvocationCall attempt =
            [&bound](const qos::Invocation& invocation) -> boost::asio::awaitable<Result> {
          // A refusal of the handler's own call leaves it as this operation's
          // failure, not as a refusal by its own policies (fault_classifier.hpp).
          std::optional<Result> result;
          try {
            if constexpr (std::is_invocable_v<const F&, Arg, const CallContext&>) {
              CallContext this_attempt = bound.call;
              this_attempt.deadline = invocation.deadline();
              this_attempt.invocation = &invocation;
              result.emplace(co_await bound.fn(bound.arg, this_attempt));
            } else {
              result.emplace(co_await bound.fn(bound.arg));
            }
          } catch (const qos::QosRejected& refusal) {
            throw DependencyRefused(refusal);
          }
          // A result JSON cannot carry (infinity, NaN) is answered 500: the handler's
          // failure (callee_failure), judged here by the chain like any exception of the
          // handler, so that its metrics, breaker and log agree with that 500.
          http::check_serializable(*result);
          co_return std::move(*result);
        };
        const qos::CallOptions options{.deadline = deadline, .idempotent = idempotent};
        std::optional<http::Response> response;
        std::exception_ptr dependency_failure;
        try {
          Result result = co_await operation_qos->execute_with(std::move(attempt), options);
          response.emplace(http::to_response(std::move(result)));
        } catch (const qos::QosRejected& rejected) {
          response.emplace(detail::rejection_response(rejected));
        } catch (const DependencyRefused&) {
          dependency_failure = std::current_exception();
        } catch (const RemoteError&) {
          dependency_failure = std::current_exception();
        } catch (const http::ClientError&) {
          dependency_failure = std::current_exception();
        } catch (const http::HttpError&) {
          dependency_failure = std::current_exception();  // logged, then rethrown
        }
        if (dependency_failure) {
          co_return detail::dependency_error_response(
              context, dependency_failure, operation_qos->current().log_policy.has_value());
        }
        co_return std::move(*response);
      });
  return *this;
}

}  // namespace coromesh
