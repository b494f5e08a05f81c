#pragma once

// Maps (method, path) to a handler. Patterns are literal segments and `{name}`
// parameters: "/api/v1/items/{id}". A path that exists under other methods yields a
// 405 with those methods in `Allow`; HEAD is served by the GET route.
//
// Build the router before the server starts; afterwards it is read-only and shared by
// every io thread without locking.

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "coromesh/http/message.hpp"

namespace coromesh::http {

struct Route;

// What a handler sees of its request.
struct RequestContext {
  const Request& request;
  std::string_view path;   // the target without the query string
  std::string_view query;  // the raw query string, without '?'
  std::vector<std::pair<std::string_view, std::string>> path_params;  // percent-decoded
  std::string_view trace_id;  // from `traceparent`, or generated; copy it to keep it
  const Route* route = nullptr;
  // Over TLS, the identity the server's peer check gave the client (e.g. its SPIFFE
  // URI); empty over plain TCP. Valid for the request's lifetime; copy it to keep it.
  std::string_view peer_identity;

  // The named path parameter; empty when absent.
  std::string_view path_param(std::string_view name) const;
};

using Handler = std::function<boost::asio::awaitable<Response>(RequestContext&)>;

struct Route {
  Verb method;
  std::string pattern;
  std::string operation;  // a stable name for logs and metric labels
  Handler handler;
  std::size_t index = 0;  // position in Router::routes(), for per-route tables
  std::vector<std::string> segments;
  bool has_params = false;
};

class Router {
 public:
  struct Match {
    const Route* route = nullptr;  // null: not found or method not allowed
    std::vector<std::pair<std::string_view, std::string>> params;
    std::string allow;  // when the path exists under other methods: "GET, HEAD, POST"
  };

  // Adds a route; throws std::invalid_argument for a malformed pattern or a duplicate
  // (method, pattern), so a wiring mistake stops start-up with a clear message.
  const Route& add(Verb method, std::string_view pattern, std::string operation, Handler handler);

  Match match(Verb method, std::string_view path) const;

  const std::vector<std::unique_ptr<Route>>& routes() const noexcept { return routes_; }

 private:
  std::vector<std::unique_ptr<Route>> routes_;
};

// Percent-decodes a path segment or query component (`+` stays a plus in paths).
// Returns false on a malformed escape.
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space = false);

}  // namespace coromesh::http
