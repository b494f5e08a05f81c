// libFuzzer target for the HTTP server's request path (framework/src/http: the in-place
// parse and its limits, the framing checks, routing, query and JSON binding, the
// x-coromesh-deadline-ms reader the sidecar's http mode also uses) fed through a real
// http::Server on loopback. Each input is sent on a fresh connection, which is then
// half-closed; whatever the bytes, the server answers with well-formed HTTP responses
// (never 500: a 500 means an exception escaped our own code), closes, and keeps serving.
//
// Long run: tests/fuzz/README.md.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/describe.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/http/binding.hpp"
#include "coromesh/http/server.hpp"
#include "coromesh/qos/deadline.hpp"

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

void check(bool condition) {
  if (!condition) {
    std::abort();  // libFuzzer reports the input that got here
  }
}

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

// Sends `bytes`, half-closes, and returns everything the server sends until it closes.
std::string exchange(std::uint16_t port, std::string_view bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  check(fd >= 0);
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  check(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      break;  // the server may refuse early (431, 413) and close
    }
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string received;
  char chunk[4096];
  for (;;) {
    const auto n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n == 0) {
      break;
    }
    if (n < 0) {
      check(errno == ECONNRESET);  // a timeout (EAGAIN) means the server hung
      break;
    }
    received.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return received;
}

// Whether one response with an allowed status starts at `at`; sets `used`. An answer to
// a HEAD has a Content-Length but no body (`headless`).
bool one_response(std::string_view received, bool headless, std::size_t& used) {
  beast::http::response_parser<beast::http::string_body> parser;
  parser.eager(true);
  parser.skip(headless);
  beast::error_code ec;
  used = parser.put(asio::buffer(received.data(), received.size()), ec);
  if (ec || !parser.is_done()) {
    return false;
  }
  const auto status = parser.get().result_int();
  // 100: the interim answer to `Expect: 100-continue`, sent before the body is read.
  if (status != 100 && status != 200 && status != 400 && status != 404 && status != 405 &&
      status != 408 && status != 413 && status != 431) {
    return false;
  }
  return headless || status < 400 || parser.get().body().starts_with(R"({"error":")");
}

// Whether the bytes from `at` on are a sequence of such responses. Pipelined HEADs make
// the boundaries ambiguous to an observer that does not track the requests, so both
// readings are tried (memoized: each offset is judged once).
bool responses_from(std::string_view received, std::size_t at, std::vector<std::int8_t>& memo) {
  if (at == received.size()) {
    return true;
  }
  if (memo[at] >= 0) {
    return memo[at] == 1;
  }
  bool ok = false;
  for (const bool headless : {false, true}) {
    std::size_t used = 0;
    if (!ok && one_response(received.substr(at), headless, used) && used > 0) {
      ok = responses_from(received, at + used, memo);
    }
  }
  memo[at] = ok ? 1 : 0;
  return ok;
}

// Every byte the server sent parses as complete responses with an allowed status.
void check_responses(std::string_view received) {
  std::vector<std::int8_t> memo(received.size(), -1);
  check(responses_from(received, 0, memo));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Harness harness;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check_responses(exchange(harness.server->port(), bytes));
  return 0;
}
