#pragma once

// The calculator's operations, declared once for the services that implement them and
// the frontend that calls them (service/operation.hpp explains COROMESH_OPERATION).
//
//   add, sub, mul, div   GET /api/v1/execute?l=<int>&r=<int>  ->  200, the bare integer
//   mod                  (the seed's format); 422 {"error":"overflow"|"division_by_zero"}
//                        mod is served by mod-svc, written in Python (services/calculator/
//                        mod-svc): the remainder with C++'s sign (of the dividend), never
//                        an overflow (INT64_MIN % -1 is 0); r == 0 is division_by_zero.
//   compute              POST /api/v1/compute {"expression":"1+2*3"}  ->  {"result":7}
//
// Each operator names its Consul service (served_by): a frontend without --upstreams
// entries finds the operators in Consul (over Connect mTLS with --mesh=native).
//
// QoS, and why:
// - operators, server side: pure arithmetic in microseconds, so the only risk is a flood;
//   a generous rate limit and bulkhead keep one caller from taking every thread.
// - operators, client side (the frontend's): a per-attempt timeout far above a healthy
//   call through two sidecars (~1 ms) but short enough that a retry still fits a user's
//   patience; retries of 502/503/504 and transport errors (GET is idempotent, and a
//   second instance usually answers); a breaker that stops calling a service that keeps
//   failing. It counts 5xx only: a 422 (overflow, division by zero) is the expression's
//   fault, not the service's. No fallback: any made-up number would be a wrong result.
// - compute, server side: one computation fans out into up to 256 operator calls, so the
//   bulkhead bounds the calls in flight (256 computations x their fan-out), and the
//   timeout bounds the whole computation, its retries included.

#include <coromesh/service/service.hpp>
#include <cstdint>
#include <string>

namespace calculator::api {

struct Operands {
  std::int64_t l = 0;
  std::int64_t r = 0;
};
BOOST_DESCRIBE_STRUCT(Operands, (), (l, r))

// The operators share their QoS; each declaration below names it.
namespace policies {
namespace qos = coromesh::qos;
using namespace std::chrono_literals;

inline constexpr auto operator_server =
    qos::server(qos::rate_limit{.permits = 100'000, .period = 1s}, qos::bulkhead{1024});

inline constexpr auto operator_client = qos::client(
    qos::timeout{.per_attempt = 1s, .mode = qos::TimeoutMode::deadline},
    qos::retry{.max_attempts = 3},
    qos::circuit_breaker{.failure_rate = 0.5, .window = 100, .minimum_calls = 20, .open_for = 10s});
}  // namespace policies

COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t, policies::operator_server,
                   policies::operator_client, coromesh::served_by("add-svc"));
COROMESH_OPERATION(sub, GET, "/api/v1/execute", Operands, std::int64_t, policies::operator_server,
                   policies::operator_client, coromesh::served_by("sub-svc"));
COROMESH_OPERATION(mul, GET, "/api/v1/execute", Operands, std::int64_t, policies::operator_server,
                   policies::operator_client, coromesh::served_by("mul-svc"));
COROMESH_OPERATION(div, GET, "/api/v1/execute", Operands, std::int64_t, policies::operator_server,
                   policies::operator_client, coromesh::served_by("div-svc"));
// mod is served by a Python service, not by coromesh::Service, so only its callers' side
// is declared here; the server's limits are mod-svc's own (connections, header sizes and
// timeouts as the framework's server; it has no rate limit or bulkhead).
// In native mode callers reach it through its sidecar's Connect endpoint, which serves
// mod-svc's certificate.
COROMESH_OPERATION(mod, GET, "/api/v1/execute", Operands, std::int64_t, policies::operator_client,
                   coromesh::served_by("mod-svc"));

struct ComputeRequest {
  std::string expression;
};
BOOST_DESCRIBE_STRUCT(ComputeRequest, (), (expression))

struct ComputeResult {
  std::int64_t result = 0;
};
BOOST_DESCRIBE_STRUCT(ComputeResult, (), (result))

COROMESH_OPERATION(compute, POST, "/api/v1/compute", ComputeRequest, ComputeResult,
                   QOS(qos::timeout{.per_attempt = 10s},
                       qos::rate_limit{.permits = 20'000, .period = 1s}, qos::bulkhead{256}));

}  // namespace calculator::api
