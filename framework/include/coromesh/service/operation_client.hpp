#pragma once

// The typed client stub of a declared operation (service/operation.hpp):
//
//   auto& add_client = service.client(api::add);       // in a Service (see service.hpp), or
//   coromesh::OperationClient add_client(api::add, executor, {.upstream = {"127.0.0.1", 9191}});
//   std::int64_t sum = co_await add_client.execute({.l = 1, .r = 2}, call);   // call: CallContext
//
// Where calls go: either one fixed `upstream` (the caller's sidecar listener for the
// service, or the service itself), or, with `discovered` set, the instances of the
// operation's service found in Consul, one endpoint chosen per attempt
// (discovered_upstream.hpp: balancing, retries to another endpoint, outlier ejection,
// and mTLS in Connect-native mode). Each execute() runs the operation's client-side QoS
// chain around one HTTP exchange per attempt: the argument goes as the query (GET, HEAD,
// DELETE) or a JSON body, the attempt's remaining deadline as `x-coromesh-deadline-ms`,
// the caller's trace as a W3C `traceparent` with a new span id. A 2xx body becomes the
// result; any other answer throws RemoteError with the callee's status and error code
// (which the chain's retry and breaker judge), a transport failure an http::ClientError.
// A 2xx body that does not decode into the result is the callee's fault, not the
// caller's: a RemoteError 502 `invalid_response` (a failure for the breaker, the adaptive
// limit and the endpoint's outlier ejection).
//
// g++ before 13 (Debian 12's g++ 12) destroys a temporary with a non-trivial destructor
// twice when it is created inside a co_await operand, e.g.
// `co_await client.execute(Greeting{"a string over 15 chars"})` where Greeting holds a
// std::string: a double free at run time. Under such a compiler execute() refuses that
// call at compile time; bind the argument to a local first
// (`Greeting g{"mesh"}; co_await client.execute(g);`) or build with clang++-16, the
// project's default. Arguments of plain numbers, like the calculator's Operands, are not
// affected.
//
// Threads: execute() may be called from coroutines on any of the executors the client
// was built with (one HTTP connection pool per executor); the client must outlive its
// calls.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "coromesh/connect/endpoint_set.hpp"
#include "coromesh/http/binding.hpp"
#include "coromesh/http/client.hpp"
#include "coromesh/qos/operation_qos.hpp"
#include "coromesh/service/operation.hpp"

// g++ before 13 destroys a temporary created inside a co_await operand twice (fixed in
// GCC 13; clang is correct). When set, OperationClient refuses such temporaries.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define COROMESH_GCC_DESTROYS_AWAITED_TEMPORARIES_TWICE 1
#else
#define COROMESH_GCC_DESTROYS_AWAITED_TEMPORARIES_TWICE 0
#endif

namespace coromesh {

class QosMetrics;
namespace runtime {
class IoPool;
}

class DiscoveredUpstream;
namespace connect {
class Pick;
}  // namespace connect

struct OperationClientOptions {
  // Where every call goes; ignored when `discovered` is set.
  http::Destination upstream{};
  // The callee's instances from Consul, an endpoint per attempt.
  std::shared_ptr<DiscoveredUpstream> discovered{};
  // Set: client-side calls, rejections and policy state are exported as side="client"
  // (service/qos_metrics.hpp). Must outlive the client.
  QosMetrics* metrics = nullptr;
  // Bounds an exchange that has no deadline at all (no caller deadline, no timeout policy).
  std::chrono::milliseconds default_timeout{30'000};
  // Bounds the TCP connect of each new connection within the attempt's deadline
  // (http::ClientOptions::connect_timeout): the callee is the caller's sidecar on
  // loopback or an instance in the same network, whose kernel answers a SYN in well under
  // a millisecond. A black-holed endpoint then fails the attempt with connect_timeout (a
  // transport fault: retried, on another endpoint when discovered) after this, instead
  // of using up the attempt's deadline. The same default as coromesh-sidecar's.
  std::chrono::milliseconds connect_timeout{250};
};

namespace detail {

// One HTTP exchange of a declared operation; non-template so Beast stays out of callers.
struct OperationRequest {
  http::Verb method;
  std::string_view path;
  std::string query;     // GET/HEAD/DELETE
  std::string body;      // others (JSON)
  std::string trace_id;  // the caller's, copied: a detached call may outlive its parent
  // A non-idempotent call made by a served operation's code: the marks of that
  // operation's attempt (CallContext::invocation), marked as the request goes out and
  // unmarked if it never left. Shared: a detached call may outlive the attempt. Else null.
  std::shared_ptr<qos::UnrepeatableMarks> sent_within;
};

// What one execute() remembers across its attempts: the endpoints tried (a retry goes to
// another one).
struct AttemptTrail {
  std::vector<std::string> tried;
};

// Takes a 2xx body; throws (RemoteError 502 invalid_response) when it does not decode.
using BodyReader = std::function<void(std::string& body)>;

class OperationTransport {
 public:
  OperationTransport(std::vector<boost::asio::any_io_executor> executors,
                     OperationClientOptions options);
  ~OperationTransport();
  OperationTransport(const OperationTransport&) = delete;
  OperationTransport& operator=(const OperationTransport&) = delete;

  // One attempt: hands a 2xx body to `read_body`; throws RemoteError for another status.
  // `request`, `trail` and `read_body` must outlive the returned awaitable (the caller
  // awaits it at once; retries reuse them).
  boost::asio::awaitable<void> exchange(const OperationRequest& request, qos::Deadline deadline,
                                        AttemptTrail& trail, const BodyReader& read_body) const;
  const OperationClientOptions& options() const noexcept { return options_; }

  // Idle pooled connections of the client on `executor` (tests: a departed endpoint's
  // connections are closed). Call on that executor.
  std::size_t idle_connections_to(const boost::asio::any_io_executor& executor,
                                  const http::Destination& destination) const;

 private:
  // One HTTP client per executor, and the endpoints it last saw (touched only there).
  struct PerExecutor {
    boost::asio::any_io_executor executor;
    std::unique_ptr<http::Client> client;
    std::shared_ptr<const connect::EndpointSet> seen;
  };
  PerExecutor& state_for(const boost::asio::any_io_executor& executor) const;
  // Endpoints a try never reached are followed by another pick, this many in all.
  static constexpr std::size_t kPicksPerAttempt = 3;
  boost::asio::awaitable<void> exchange_discovered(PerExecutor& own,
                                                   const OperationRequest& request,
                                                   std::chrono::steady_clock::time_point until,
                                                   qos::Deadline deadline, AttemptTrail& trail,
                                                   const BodyReader& read_body) const;
  // One try on `pick`'s endpoint, recorded against it; the failure, null for success.
  // `upstream` is held by the caller's frame.
  boost::asio::awaitable<std::exception_ptr> exchange_with(
      PerExecutor& own, DiscoveredUpstream& upstream, const OperationRequest& request,
      connect::Pick pick, std::chrono::steady_clock::time_point until, qos::Deadline deadline,
      AttemptTrail& trail, const BodyReader& read_body) const;
  // Closes the idle connections to endpoints that `now` no longer has.
  void forget_departed(PerExecutor& own,
                       const std::shared_ptr<const connect::EndpointSet>& now) const;

  OperationClientOptions options_;
  std::vector<std::unique_ptr<PerExecutor>> clients_;
};

std::vector<boost::asio::any_io_executor> executors_of(runtime::IoPool& pool);

qos::BuildOptions client_build_options(QosMetrics* metrics, const std::string& operation);
qos::RejectionHook client_rejection_hook(QosMetrics* metrics, const std::string& operation);
// Exports the state gauges of a client's QoS; `objects` is called at each scrape.
void export_client_state(QosMetrics* metrics, const std::string& operation,
                         std::function<std::shared_ptr<const qos::PolicyObjects>()> objects);

// The exception for a 2xx body that does not decode into the operation's result.
[[noreturn]] void throw_undecodable_response(std::string_view operation, const std::string& why);

}  // namespace detail

template <class Op>
class OperationClient {
 public:
  using Arg = typename Op::argument_type;
  using Result = typename Op::result_type;

  OperationClient(const Op& op, std::vector<boost::asio::any_io_executor> executors,
                  OperationClientOptions options)
      : op_(op),
        transport_(std::move(executors), options),
        qos_(std::make_shared<qos::OperationQos<Result>>(
            std::string(op.name), qos::to_policy_set(op.client),
            qos::fallback_of<Result>(op.client),
            detail::client_build_options(options.metrics, std::string(op.name)),
            detail::client_rejection_hook(options.metrics, std::string(op.name)))) {
    // Weak: a scrape after the client is gone reads nothing instead of freed memory.
    detail::export_client_state(options.metrics, std::string(op.name),
                                [weak = std::weak_ptr<qos::OperationQos<Result>>(qos_)] {
                                  auto alive = weak.lock();
                                  return alive ? alive->objects() : nullptr;
                                });
  }

  OperationClient(const Op& op, boost::asio::any_io_executor executor,
                  OperationClientOptions options)
      : OperationClient(op, std::vector<boost::asio::any_io_executor>{std::move(executor)},
                        std::move(options)) {}

  // Calls the operation through its client-side QoS. `parent`: the caller's call, whose
  // deadline bounds this one and whose trace it continues.
#if COROMESH_GCC_DESTROYS_AWAITED_TEMPORARIES_TWICE
  // g++ < 13: an argument with a destructor must come as an lvalue (see the top of this
  // file). The lvalue overloads copy it outside the co_await operand, which is safe.
  boost::asio::awaitable<Result> execute(const Arg& arg) const {
    return call(arg, {}, {}, nullptr);
  }
  boost::asio::awaitable<Result> execute(const Arg& arg, CallContext parent) const {
    return call(arg, parent.deadline, std::string(parent.trace_id), marks_of(parent));
  }
  boost::asio::awaitable<Result> execute(Arg&& arg) const {
    return execute(std::move(arg), CallContext{});
  }
  boost::asio::awaitable<Result> execute(Arg&& arg, CallContext parent) const {
    static_assert(std::is_trivially_destructible_v<Arg>,
                  "coromesh: g++ < 13 destroys a temporary created in a co_await operand twice "
                  "(free(): double free detected at run time), and this argument type has a "
                  "destructor. Bind the argument to a local and pass the lvalue "
                  "(Arg a{...}; co_await client.execute(a, call);), or build with clang++-16 "
                  "(the default) or g++ >= 13.");
    return call(std::move(arg), parent.deadline, std::string(parent.trace_id), marks_of(parent));
  }
#else
  boost::asio::awaitable<Result> execute(Arg arg) const {
    return call(std::move(arg), {}, {}, nullptr);
  }
  boost::asio::awaitable<Result> execute(Arg arg, CallContext parent) const {
    return call(std::move(arg), parent.deadline, std::string(parent.trace_id), marks_of(parent));
  }
#endif

  // The client-side QoS (current policies, live overrides through apply()).
  qos::OperationQos<Result>& qos() noexcept {
    return *qos_;
  }
  const Op& operation() const noexcept {
    return op_;
  }
  // Where calls go and the per-thread connection pools (tests, diagnostics).
  const detail::OperationTransport& transport() const noexcept {
    return transport_;
  }

 private:
  // What this call keeps of its caller's attempt: the marks its request sets when it may
  // not be sent twice. Taken in execute(), while the caller's CallContext is surely valid:
  // the coroutine's body may first run after the caller's code has returned (co_spawn).
  std::shared_ptr<qos::UnrepeatableMarks> marks_of(const CallContext& parent) const {
    if (op_.idempotent() || parent.invocation == nullptr) {
      return nullptr;
    }
    return parent.invocation->unrepeatable_marks();
  }

  // The coroutine behind every execute(). Its parameters are always initialized by a
  // plain call inside execute(), never in the caller's co_await operand, and none has a
  // default argument: both would be temporaries g++ 12 destroys twice. They are copies of
  // what the caller's CallContext points at (its trace id into the server's request, its
  // attempt), made in execute(): a detached call may outlive them.
  boost::asio::awaitable<Result> call(Arg arg, qos::Deadline deadline, std::string trace_id,
                                      std::shared_ptr<qos::UnrepeatableMarks> sent_within) const {
    // Built once for every attempt; the attempts reach it through one pointer, so the
    // std::function below holds it without allocating.
    detail::OperationRequest request{
        op_.method, op_.path, {}, {}, std::move(trace_id), std::move(sent_within)};
    if (op_.method == http::Verb::get || op_.method == http::Verb::head ||
        op_.method == http::Verb::delete_) {
      request.query = http::to_query(arg);
    } else {
      request.body = http::to_json(arg);
    }
    const detail::OperationTransport& transport = transport_;
    const auto* prepared = &request;
    const std::string_view name = op_.name;
    detail::AttemptTrail trail;
    auto* attempts = &trail;
    typename qos::Chain<Result>::InvocationCall attempt =
        [prepared, &transport, name,
         attempts](const qos::Invocation& invocation) -> boost::asio::awaitable<Result> {
      std::optional<Result> result;
      // A named local, not a temporary in the co_await operand (g++ 12, see the top).
      const detail::BodyReader read_body = [&result, name](std::string& body) {
        try {
          result.emplace(http::from_body<Result>(body));
        } catch (const http::HttpError& e) {
          // Binding blames its input (400); here the input is the callee's answer.
          detail::throw_undecodable_response(name, e.what());
        }
      };
      try {
        co_await transport.exchange(*prepared, invocation.deadline(), *attempts, read_body);
      } catch (const qos::QosRejected& refused) {
        // The spent deadline exchange() refuses before sending: a refusal of this chain,
        // told to its rejection hook (the metrics) like the policies' own.
        invocation.reject(refused.policy(), refused.reason());
      }
      co_return std::move(*result);
    };
    const qos::CallOptions options{.deadline = deadline, .idempotent = op_.idempotent()};
    co_return co_await qos_->execute_with(std::move(attempt), options);
  }

  Op op_;
  detail::OperationTransport transport_;
  std::shared_ptr<qos::OperationQos<Result>> qos_;
};

}  // namespace coromesh
