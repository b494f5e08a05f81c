// libFuzzer target for the HTTP server's request path (framework/src/http: the in-place
// parse and its limits, the framing checks, routing, query and JSON binding, the
// x-coromesh-deadline-ms reader the sidecar's http mode also uses) fed through a real
// http::Server on loopback. Each input is sent on a fresh connection, which is then
// half-closed; whatever the bytes, the server answers with well-formed HTTP responses
// (never 500: a 500 means an exception escaped our own code), closes, and keeps serving.
//
// Long run: tests/fuzz/README.md.
#include <boost/asio/awaitable.hpp>
#include <boost/describe.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "coromesh/http/binding.hpp"
#include "coromesh/http/server.hpp"
#include "coromesh/qos/deadline.hpp"
#include "http_wire.hpp"

namespace fuzz {
struct Operands {
  std::int64_t l = 0;
  std::int64_t r = 0;
};
BOOST_DESCRIBE_STRUCT(Operands, (), (l, r))
}  // namespace fuzz

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = coromesh::http;
using namespace std::chrono_literals;

using fuzz::check;

http::Response text(std::string body) {
  http::Response response{http::Status::ok, 11};
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

// A deadline header, when present, is read as a service and the sidecar read it.
void read_deadline(const http::RequestContext& context) {
  const auto header = context.request.find(coromesh::qos::kDeadlineHeader);
  if (header != context.request.end()) {
    const auto parsed = coromesh::qos::parse_deadline_header(header->value());
    if (!parsed) {
      throw http::HttpError(http::Status::bad_request, "invalid_deadline",
                            std::string(parsed.error));
    }
  }
}

// One server for the whole run: small limits, so inputs reach them.
struct Harness {
  coromesh::runtime::IoPool pool{1};
  http::Router router;
  std::unique_ptr<http::Server> server;

  Harness() {
    router.add(http::Verb::get, "/api/v1/execute", "execute",
               [](http::RequestContext& context) -> asio::awaitable<http::Response> {
                 read_deadline(context);
                 const auto operands = http::bind_query<fuzz::Operands>(context.query);
                 co_return text(std::to_string(operands.l ^ operands.r));
               });
    router.add(http::Verb::post, "/api/v1/compute", "compute",
               [](http::RequestContext& context) -> asio::awaitable<http::Response> {
                 read_deadline(context);
                 const auto operands = http::bind_json<fuzz::Operands>(context.request.body());
                 co_return text(http::to_json(operands));
               });
    router.add(http::Verb::get, "/items/{id}", "item",
               [](http::RequestContext& context) -> asio::awaitable<http::Response> {
                 co_return text(std::string(context.path_param("id")));
               });
    http::ServerLimits limits;
    limits.max_header_bytes = 2048;
    limits.max_body_bytes = 4096;
    limits.header_timeout = 5s;  // a half-closed client never makes the server wait
    server = std::make_unique<http::Server>(pool, router, limits);
    server->listen("127.0.0.1", 0);
    server->start();
    pool.start();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Harness harness;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // 100: the interim answer to `Expect: 100-continue`, sent before the body is read; 501:
  // a transfer coding besides chunked (framing::has_coding_besides_chunked).
  check(fuzz::are_responses(fuzz::exchange(harness.server->port(), bytes),
                            {100, 200, 400, 404, 405, 408, 413, 431, 501}));
  return 0;
}
