// Compiled by the declaration.* CTest cases with one DECLARATION_CASE defined; each case
// must fail to compile with the message the test expects, and `valid` must compile.
// See tests/compile_fail/CMakeLists.txt.

#include <coromesh/service/operation.hpp>
#include <cstdint>
#include <string>
#include <vector>

struct Operands {
  std::int64_t l;
  std::int64_t r;
};
BOOST_DESCRIBE_STRUCT(Operands, (), (l, r))

struct Reply {  // described only in the cases that need it
  std::string message;
};

#if DECLARATION_CASE == 0  // valid: the control case (the README's declaration)
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::rate_limit{5000, 1s}, qos::bulkhead{64}, qos::adaptive_limit{},
                       qos::log{}),
                   CLIENT_QOS(qos::timeout{100ms}, qos::retry{.max_attempts = 3},
                              qos::circuit_breaker{.failure_rate = 0.5, .window = 100},
                              qos::fallback{std::int64_t{0}}));
#elif DECLARATION_CASE == 1   // a zero-capacity bulkhead
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::bulkhead{.max_concurrent = 0}));
#elif DECLARATION_CASE == 2   // a rate of 0
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::rate_limit{.permits = 0}));
#elif DECLARATION_CASE == 3   // retries whose backoffs cannot fit in the overall timeout
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   CLIENT_QOS(qos::timeout{.per_attempt = 100ms, .overall = 300ms},
                              qos::retry{
                                  .max_attempts = 5, .base_backoff = 50ms, .max_backoff = 1s}));
#elif DECLARATION_CASE == 4   // one kind twice
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::timeout{1s}, qos::timeout{2s}));
#elif DECLARATION_CASE == 5   // a string literal as the fallback of a number
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t, QOS(qos::fallback{"none"}));
#elif DECLARATION_CASE == 6   // a path that is not one
COROMESH_OPERATION(add, GET, "api/v1/execute", Operands, std::int64_t);
#elif DECLARATION_CASE == 7   // a result type without BOOST_DESCRIBE_STRUCT
COROMESH_OPERATION(greet, GET, "/api/v1/hello", Operands, Reply);
#elif DECLARATION_CASE == 8   // a JSON body type without BOOST_DESCRIBE_STRUCT
COROMESH_OPERATION(greet, POST, "/api/v1/hello", Reply, std::int64_t);
#elif DECLARATION_CASE == 9   // a query argument with a member a query string cannot hold
struct Batch {
  std::vector<std::int64_t> values;
};
BOOST_DESCRIBE_STRUCT(Batch, (), (values))
COROMESH_OPERATION(sum, GET, "/api/v1/sum", Batch, std::int64_t);
#elif DECLARATION_CASE == 10  // a server retry on POST without the opt-in: reruns the handler
COROMESH_OPERATION(add, POST, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::retry{.max_attempts = 3}));
#elif DECLARATION_CASE == 11  // valid: retry on POST with the explicit opt-in
COROMESH_OPERATION(add, POST, "/api/v1/execute", Operands, std::int64_t,
                   CLIENT_QOS(qos::retry{.max_attempts = 3, .non_idempotent = true}));
#elif DECLARATION_CASE == 12  // a fallback value of the wrong type (not a string literal)
BOOST_DESCRIBE_STRUCT(Reply, (), (message))
COROMESH_OPERATION(greet, GET, "/api/v1/hello", Operands, Reply,
                   CLIENT_QOS(qos::fallback{std::int64_t{0}}));
#elif DECLARATION_CASE == 13  // a service name Consul cannot carry
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   coromesh::served_by("add svc"));
#elif DECLARATION_CASE == 14  // two services
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   coromesh::served_by("add-svc"), coromesh::served_by("sum-svc"));
#elif DECLARATION_CASE == 15  // served_by with both QoS lists, in any order
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t, CLIENT_QOS(qos::retry{}),
                   coromesh::served_by("add-svc"), QOS(qos::bulkhead{4}));
static_assert(add.service == "add-svc");
#elif DECLARATION_CASE == 16  // valid: a client retry on POST without the opt-in (it sends
                              // again only a request that never reached the callee)
COROMESH_OPERATION(add, POST, "/api/v1/execute", Operands, std::int64_t,
                   CLIENT_QOS(qos::retry{.max_attempts = 3}));
#elif DECLARATION_CASE == 17  // 429 in retry_on: a callee's refusal is never retried
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   CLIENT_QOS(qos::retry{.retry_on = {429, 502, 503, 504}}));
#endif

int main() {
  return 0;
}
