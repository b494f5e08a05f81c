#pragma once

// Declaring an operation: one line that both the service implementing it and every
// caller include.
//
//   // calculator_api.hpp
//   struct Operands { std::int64_t l; std::int64_t r; };
//   BOOST_DESCRIBE_STRUCT(Operands, (), (l, r))
//
//   COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
//       QOS(qos::rate_limit{5000, 1s}, qos::bulkhead{64}, qos::log{}),
//       CLIENT_QOS(qos::timeout{100ms}, qos::retry{}, qos::circuit_breaker{}));
//
// expands to (roughly)
//
//   inline constexpr auto add = coromesh::make_operation<Operands, std::int64_t>(
//       "add", http::Verb::get, "/api/v1/execute",
//       [] { namespace qos = coromesh::qos; using namespace std::chrono_literals;
//            return qos::server(qos::rate_limit{5000, 1s}, ...); }(),
//       [] { ...; return qos::client(qos::timeout{100ms}, ...); }());
//   static_assert(coromesh::qos::detail::declaration_ok<add.check()>(), "...");
//
// so `add` is a constexpr value: name, method, path, argument and result types, and the
// server-side and client-side policy lists. A declaration that cannot work does not
// compile, and the compiler quotes why (the DeclarationError template argument):
//
//   In instantiation of 'declaration_ok() [with DeclarationError E = DeclarationError{
//       "server QoS of 'add': bulkhead: a zero-capacity bulkhead ... admits nothing", 71}]'
//
// From the value the framework generates:
//   - service.serve(add, fn): the route, argument binding, the server-side chain with its
//     rejections (429/503/504 + JSON error + metric + log), the incoming deadline
//     (x-coromesh-deadline-ms) and trace, the metric families, the operation's QoS in the
//     service's Consul Meta (`qos_add`), and the live override watch on Consul KV;
//   - OperationClient<add>: the typed stub, `co_await add_client.execute({.l = 1, .r = 2})`,
//     running the client-side chain, sending the remaining deadline and the trace on.
//
// Inside QOS(...) and CLIENT_QOS(...) `qos::` and the chrono literals need no using
// declarations. Either list may be left out; QOS(...) is the server side.

#include <chrono>
#include <string>
#include <string_view>

#include "coromesh/http/message.hpp"
#include "coromesh/qos/deadline.hpp"
#include "coromesh/qos/policies.hpp"

namespace coromesh::http {
struct RequestContext;
}

namespace coromesh {

// The call an operation's code runs in: what it must hand to the calls it makes so the
// deadline and the trace travel on. Valid while that call runs (trace_id and request
// point into the server's request): copy what must outlive it.
struct CallContext {
  qos::Deadline deadline{};     // what this attempt must finish by (none: no deadline)
  std::string_view trace_id{};  // W3C trace id (32 hex) to continue; empty starts a new trace
  const http::RequestContext* request = nullptr;  // server side: the HTTP request
};

template <class Arg, class Result, class ServerList, class ClientList>
struct Operation {
  using argument_type = Arg;
  using result_type = Result;

  std::string_view name;
  http::Verb method;
  std::string_view path;
  ServerList server;
  ClientList client;

  // Idempotent per HTTP semantics: retries of a POST are off unless declared otherwise.
  constexpr bool idempotent() const noexcept {
    return method == http::Verb::get || method == http::Verb::head || method == http::Verb::put ||
           method == http::Verb::delete_ || method == http::Verb::options;
  }

  // The first problem with the declaration, prefixed by side and operation; empty if none.
  constexpr qos::DeclarationError check() const noexcept {
    if (name.empty() || path.empty() || path.front() != '/') {
      return qos::DeclarationError("operation '", name,
                                   "': needs a name and a path starting with /");
    }
    if (auto e = qos::validate_declaration(server); !e.empty()) {
      return qos::DeclarationError("server QoS of '", name, "': ", e);
    }
    if (auto e = qos::validate_declaration(client); !e.empty()) {
      return qos::DeclarationError("client QoS of '", name, "': ", e);
    }
    return {};
  }
};

namespace detail {

template <qos::Side S>
constexpr auto pick_side() {
  return qos::PolicyList<S>{};
}
template <qos::Side S, class First, class... Rest>
constexpr auto pick_side(First first, Rest... rest) {
  if constexpr (First::side == S) {
    static_assert(((Rest::side != S) && ...), "a side's QoS list is given twice");
    return first;
  } else {
    return pick_side<S>(rest...);
  }
}

// COROMESH_OPERATION's method names.
inline constexpr http::Verb verb_GET = http::Verb::get;
inline constexpr http::Verb verb_HEAD = http::Verb::head;
inline constexpr http::Verb verb_POST = http::Verb::post;
inline constexpr http::Verb verb_PUT = http::Verb::put;
inline constexpr http::Verb verb_PATCH = http::Verb::patch;
inline constexpr http::Verb verb_DELETE = http::Verb::delete_;

}  // namespace detail

// `lists`: at most one qos::server(...) and one qos::client(...), in any order.
template <class Arg, class Result, class... Lists>
constexpr auto make_operation(std::string_view name, http::Verb method, std::string_view path,
                              Lists... lists) {
  auto server = detail::pick_side<qos::Side::server>(lists...);
  auto client = detail::pick_side<qos::Side::client>(lists...);
  return Operation<Arg, Result, decltype(server), decltype(client)>{name, method, path, server,
                                                                    client};
}

}  // namespace coromesh

// Server-side and client-side policy lists of a COROMESH_OPERATION.
#define COROMESH_QOS_LIST(side, ...)           \
  [] {                                         \
    namespace qos = ::coromesh::qos;           \
    using namespace ::std::chrono_literals;    \
    return ::coromesh::qos::side(__VA_ARGS__); \
  }()
#define QOS(...) COROMESH_QOS_LIST(server, __VA_ARGS__)
#define CLIENT_QOS(...) COROMESH_QOS_LIST(client, __VA_ARGS__)

// Declares `id` as the operation's constexpr value and checks it at compile time.
// `method` is GET, HEAD, POST, PUT, PATCH or DELETE.
#define COROMESH_OPERATION(id, method, path, Arg, Result, ...)                  \
  inline constexpr auto id = ::coromesh::make_operation<Arg, Result>(           \
      #id, ::coromesh::detail::verb_##method, path __VA_OPT__(, ) __VA_ARGS__); \
  static_assert(::coromesh::qos::detail::declaration_ok<id.check()>(),          \
                "COROMESH_OPERATION(" #id "): invalid declaration")
