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
//       CLIENT_QOS(qos::timeout{100ms}, qos::retry{}, qos::circuit_breaker{}),
//       coromesh::served_by("add"));
//
// `served_by` names the Consul service that serves the operation: a caller without an
// --upstreams entry for it finds that service's instances in Consul (operation_client.hpp).
// It is optional (a declaration without it is called through --upstreams only) and may
// come anywhere after the result type.
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
// compile: an argument or result type that cannot be bound (types_bindable below), a
// fallback that cannot answer for the result, a policy list that cannot work, a server
// retry on POST or PATCH without qos::retry{.non_idempotent = true} (it would run the
// handler again). A client retry on POST or PATCH compiles without it: it sends the
// request again only when it never reached the callee (qos/fault.hpp), and after any
// retryable failure with it. The compiler quotes why; g++
// in the DeclarationError template argument, clang in the note on declaration_quoted:
//
//   In instantiation of 'declaration_ok() [with DeclarationError E = DeclarationError{
//       "server QoS of 'add': bulkhead: a zero-capacity bulkhead ... admits nothing", 71}]'
//   note: in call to 'declaration_quoted({{15, &"server QoS of '"[0]}, {3, &"add"[0]},
//       {3, &"': "[0]}, {68, &"bulkhead: a zero-capacity bulkhead ... admits nothing"[0]}})'
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
#include <type_traits>

#include "coromesh/http/binding.hpp"
#include "coromesh/http/message.hpp"
#include "coromesh/qos/deadline.hpp"
#include "coromesh/qos/operation_qos.hpp"
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
  // Server side: the attempt of the served operation running this code. A typed client
  // call that sends a non-idempotent request marks it, so that the operation's own retry
  // does not run the code, and send that request, again.
  const qos::Invocation* invocation = nullptr;
};

// A declaration's problem as the pieces of its message, each a string literal or the
// operation's name: clang quotes string literals in full where it elides the
// DeclarationError that g++ quotes (see COROMESH_OPERATION).
struct DeclarationProblem {
  std::string_view a{}, b{}, c{}, d{};
  constexpr bool empty() const noexcept { return a.empty(); }
};

namespace detail {
// Not constexpr: reaching it stops the compile-time evaluation, and clang's note on the
// failed call prints the problem's pieces in full.
inline void invalid_declaration(std::string_view, std::string_view, std::string_view,
                                std::string_view) {}
constexpr bool declaration_quoted(DeclarationProblem p) {
  if (!p.empty()) {
    invalid_declaration(p.a, p.b, p.c, p.d);
  }
  return true;
}
}  // namespace detail

// The Consul service that serves an operation (see the top of this file).
struct ServedBy {
  std::string_view service;
};
constexpr ServedBy served_by(std::string_view service) noexcept {
  return ServedBy{service};
}

namespace detail {
// A Consul service name a DNS lookup can carry: letters, digits, '-' and '_'.
constexpr bool valid_service_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 63) {
    return false;
  }
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) {
      return false;
    }
  }
  return true;
}
}  // namespace detail

template <class Arg, class Result, class ServerList, class ClientList>
struct Operation {
  using argument_type = Arg;
  using result_type = Result;

  std::string_view name;
  http::Verb method;
  std::string_view path;
  ServerList server;
  ClientList client;
  std::string_view service{};  // served_by(...); empty: reached through --upstreams only

  // Idempotent per HTTP semantics: a POST is retried only when its request never reached
  // the callee, unless declared otherwise (qos::retry{.non_idempotent = true}).
  constexpr bool idempotent() const noexcept {
    return method == http::Verb::get || method == http::Verb::head || method == http::Verb::put ||
           method == http::Verb::delete_ || method == http::Verb::options;
  }

  // The first problem with the declaration, as the pieces of its message (string
  // literals and the operation's name), prefixed by side and operation; empty if none.
  // A fallback that cannot answer for Result fails its own static_assert, which says why.
  constexpr DeclarationProblem problem() const noexcept {
    static_assert(qos::check_fallbacks<Result>(static_cast<const ServerList*>(nullptr)) &&
                  qos::check_fallbacks<Result>(static_cast<const ClientList*>(nullptr)));
    if (name.empty() || path.empty() || path.front() != '/') {
      return {"operation '", name, "': needs a name and a path starting with /"};
    }
    if (!service.empty() && !detail::valid_service_name(service)) {
      return {"operation '", name,
              "': served_by needs a Consul service name (letters, digits, '-' and '_', at "
              "most 63)"};
    }
    if (auto e = qos::validate_declaration(server); !e.empty()) {
      return {"server QoS of '", name, "': ", e};
    }
    if (auto e = qos::validate_declaration(client); !e.empty()) {
      return {"client QoS of '", name, "': ", e};
    }
    if (!idempotent() && retries_without_opt_in(server)) {
      return {"operation '", name,
              "': a server retry on a non-idempotent method (POST, PATCH) runs the handler "
              "again; use qos::retry{.non_idempotent = true} only if the handler is "
              "idempotent by design"};
    }
    return {};
  }

  // The problem as one message (what g++ quotes from the DeclarationError template
  // argument); empty if none.
  constexpr qos::DeclarationError check() const noexcept {
    const DeclarationProblem p = problem();
    return p.empty() ? qos::DeclarationError{} : qos::DeclarationError(p.a, p.b, p.c, p.d);
  }

 private:
  // A retry policy that may run the call again without the explicit non_idempotent
  // opt-in. On the server side of a POST it never could: whatever escapes the handler,
  // the handler ran (service/fault_classifier.hpp), so it is refused.
  template <class List>
  static constexpr bool retries_without_opt_in(const List& list) noexcept {
    if constexpr (List::template count<qos::retry>() > 0) {
      const qos::retry& r = list.template get<qos::retry>();
      return r.max_attempts > 1 && !r.non_idempotent;
    } else {
      return false;
    }
  }
};

namespace detail {

// Whether a declaration argument is the QoS list of side S (served_by is none).
template <class T, qos::Side S>
constexpr bool is_side_list() {
  if constexpr (std::is_same_v<T, ServedBy>) {
    return false;
  } else {
    return T::side == S;
  }
}

template <qos::Side S>
constexpr auto pick_side() {
  return qos::PolicyList<S>{};
}
template <qos::Side S, class First, class... Rest>
constexpr auto pick_side(First first, Rest... rest) {
  if constexpr (is_side_list<First, S>()) {
    static_assert((!is_side_list<Rest, S>() && ...), "a side's QoS list is given twice");
    return first;
  } else {
    return pick_side<S>(rest...);
  }
}

template <class T>
constexpr std::string_view served_name(const T& value) {
  if constexpr (std::is_same_v<T, ServedBy>) {
    return value.service;
  } else {
    return {};
  }
}

template <class... Args>
constexpr std::string_view pick_service(Args... args) {
  static_assert((std::is_same_v<Args, ServedBy> + ... + 0) <= 1,
                "COROMESH_OPERATION: served_by is given twice");
  std::string_view service;
  ((service = std::is_same_v<Args, ServedBy> ? served_name(args) : service), ...);
  return service;
}

// COROMESH_OPERATION's check that the argument binds from the request and the result
// serializes to the response (http/binding.hpp); each failure names the fix. Without it a
// missing BOOST_DESCRIBE_STRUCT surfaces as pages of boost::json overloads at serve().
template <class Arg, class Result, http::Verb Method>
constexpr bool types_bindable() noexcept {
  if constexpr (Method == http::Verb::get || Method == http::Verb::head ||
                Method == http::Verb::delete_) {
    static_assert(http::QueryBindable<Arg>,
                  "COROMESH_OPERATION: a GET, HEAD or DELETE argument is bound from the query "
                  "string: it must be a struct described with BOOST_DESCRIBE_STRUCT whose "
                  "members are numbers, bool, std::string or std::optional of those");
  } else {
    static_assert(http::JsonBindable<Arg>,
                  "COROMESH_OPERATION: a POST, PUT or PATCH argument is bound from the JSON "
                  "body: it must be a number, bool, std::string, std::vector or a struct "
                  "described with BOOST_DESCRIBE_STRUCT (is BOOST_DESCRIBE_STRUCT missing?)");
  }
  static_assert(http::JsonBindable<Result>,
                "COROMESH_OPERATION: the result is sent back as JSON: it must be a number, "
                "bool, std::string, std::vector or a struct described with "
                "BOOST_DESCRIBE_STRUCT (is BOOST_DESCRIBE_STRUCT missing?)");
  return true;
}

// COROMESH_OPERATION's method names.
inline constexpr http::Verb verb_GET = http::Verb::get;
inline constexpr http::Verb verb_HEAD = http::Verb::head;
inline constexpr http::Verb verb_POST = http::Verb::post;
inline constexpr http::Verb verb_PUT = http::Verb::put;
inline constexpr http::Verb verb_PATCH = http::Verb::patch;
inline constexpr http::Verb verb_DELETE = http::Verb::delete_;

}  // namespace detail

// `lists`: at most one qos::server(...), one qos::client(...) and one served_by(...), in
// any order.
template <class Arg, class Result, class... Lists>
constexpr auto make_operation(std::string_view name, http::Verb method, std::string_view path,
                              Lists... lists) {
  auto server = detail::pick_side<qos::Side::server>(lists...);
  auto client = detail::pick_side<qos::Side::client>(lists...);
  return Operation<Arg, Result, decltype(server), decltype(client)>{
      name, method, path, server, client, detail::pick_service(lists...)};
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
#define COROMESH_OPERATION(id, method, path, Arg, Result, ...)                              \
  static_assert(                                                                            \
      ::coromesh::detail::types_bindable<Arg, Result, ::coromesh::detail::verb_##method>(), \
      "COROMESH_OPERATION(" #id "): the argument or result type cannot be bound");          \
  inline constexpr auto id = ::coromesh::make_operation<Arg, Result>(                       \
      #id, ::coromesh::detail::verb_##method, path __VA_OPT__(, ) __VA_ARGS__);             \
  static_assert(::coromesh::qos::detail::declaration_ok<id.check()>(),                      \
                "COROMESH_OPERATION(" #id "): invalid declaration");                        \
  COROMESH_DETAIL_QUOTE_PROBLEM(id)

// g++ quotes a failed check in full from declaration_ok's template argument; clang
// elides long values there but prints string literals in full in the note on a failed
// call, so under clang the problem's pieces are checked once more that way.
#if defined(__clang__)
#define COROMESH_DETAIL_QUOTE_PROBLEM(id)                             \
  static_assert(::coromesh::detail::declaration_quoted(id.problem()), \
                "COROMESH_OPERATION(" #id                             \
                "): invalid declaration (the message "                \
                "is in the note 'in call to declaration_quoted' below)")
#else
#define COROMESH_DETAIL_QUOTE_PROBLEM(id) static_assert(true)
#endif
