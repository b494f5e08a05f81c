#pragma once

// Turns a function on plain types into a route handler: the argument struct is bound
// from the query string (GET, HEAD, DELETE) or the JSON body (other methods), the
// result is serialized back. Binding failures become 400s naming the field.
//
//   struct Operands { std::int64_t l; std::int64_t r; };
//   BOOST_DESCRIBE_STRUCT(Operands, (), (l, r))
//
//   router.add(Verb::get, "/api/v1/execute", "add",
//              typed_handler<Operands>(Verb::get, [](Operands in) -> asio::awaitable<std::int64_t>
//              {
//                co_return in.l + in.r;
//              }));
//
// Results: an integer or floating-point value is written as bare text (the seed's
// format: `GET /api/v1/execute?l=1&r=2` answers `3`), a std::string as text/plain, a
// described struct as JSON, an http::Response as is.

#include <boost/asio/awaitable.hpp>
#include <concepts>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "coromesh/http/binding.hpp"
#include "coromesh/http/router.hpp"

namespace coromesh::http {

// Bare text body, as the operator services answer.
Response make_text_response(Status status, std::string body);

template <class Result>
Response to_response(Result&& result) {
  using R = std::remove_cvref_t<Result>;
  if constexpr (std::is_same_v<R, Response>) {
    return std::forward<Result>(result);
  } else if constexpr (std::is_same_v<R, std::string>) {
    return make_text_response(Status::ok, std::forward<Result>(result));
  } else if constexpr (std::is_arithmetic_v<R> && !std::is_same_v<R, bool>) {
    return make_text_response(Status::ok, serialize_json(boost::json::value(result)));
  } else {
    return make_json_response(Status::ok, to_json(result));
  }
}

// The argument from the query string (GET, HEAD, DELETE) or else the JSON body. The query
// binding is compiled only for an Arg it supports: a POST's argument may hold lists and
// nested structs that no query string carries. COROMESH_OPERATION checks at compile time
// that a GET, HEAD or DELETE argument binds from the query, and typed_handler refuses
// such a route when it is made, so the logic_error cannot be reached.
constexpr bool binds_from_query(Verb method) noexcept {
  return method == Verb::get || method == Verb::head || method == Verb::delete_;
}

template <class Arg>
Arg bind_request(Verb method, const RequestContext& context) {
  if (binds_from_query(method)) {
    if constexpr (QueryBindable<Arg>) {
      return bind_query<Arg>(context.query);
    } else {
      throw std::logic_error(
          "the argument of a GET, HEAD or DELETE route binds from the query "
          "string: only numbers, bool, strings and optionals of those");
    }
  }
  return bind_json<Arg>(context.request.body());
}

// Answers an exception that escaped the handler, or rethrows it (to the connection's own
// handling: HttpError's status, else 500).
using HandlerErrorAnswer = Response (*)(const RequestContext& context,
                                        const std::exception_ptr& error);

// `f` is called as f(Arg) or f(Arg, RequestContext&) and returns awaitable<Result>. With
// `on_error`, what `f` throws is answered by it (binding errors are not: they are the
// caller's 400 as always).
template <class Arg, class F>
Handler typed_handler(Verb method, F f, HandlerErrorAnswer on_error = nullptr) {
  if constexpr (!QueryBindable<Arg>) {
    if (binds_from_query(method)) {
      throw std::invalid_argument(
          "typed_handler: a GET, HEAD or DELETE route binds its argument from the query "
          "string, which carries only numbers, bool, strings and optionals of those");
    }
  }
  return [method, f = std::move(f),
          on_error](RequestContext& context) -> boost::asio::awaitable<Response> {
    Arg arg = bind_request<Arg>(method, context);
    std::exception_ptr failure;
    try {
      if constexpr (std::is_invocable_v<F&, Arg, RequestContext&>) {
        co_return to_response(co_await f(std::move(arg), context));
      } else {
        co_return to_response(co_await f(std::move(arg)));
      }
    } catch (...) {
      if (on_error == nullptr) {
        throw;
      }
      failure = std::current_exception();
    }
    co_return on_error(context, failure);
  };
}

}  // namespace coromesh::http
