// Compiled by the declaration.* CTest cases with one DECLARATION_CASE defined; each case
// must fail to compile with the message the test expects, and `valid` must compile.
// See tests/compile_fail/CMakeLists.txt.

#include <coromesh/service/operation.hpp>
#include <cstdint>

struct Operands {
  std::int64_t l;
  std::int64_t r;
};

#if DECLARATION_CASE == 0  // valid: the control case (the README's declaration)
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::rate_limit{5000, 1s}, qos::bulkhead{64}, qos::adaptive_limit{},
                       qos::log{}),
                   CLIENT_QOS(qos::timeout{100ms}, qos::retry{.max_attempts = 3},
                              qos::circuit_breaker{.failure_rate = 0.5, .window = 100},
                              qos::fallback{std::int64_t{0}}));
#elif DECLARATION_CASE == 1  // a zero-capacity bulkhead
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::bulkhead{.max_concurrent = 0}));
#elif DECLARATION_CASE == 2  // a rate of 0
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::rate_limit{.permits = 0}));
#elif DECLARATION_CASE == 3  // retries whose backoffs cannot fit in the overall timeout
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   CLIENT_QOS(qos::timeout{.per_attempt = 100ms, .overall = 300ms},
                              qos::retry{
                                  .max_attempts = 5, .base_backoff = 50ms, .max_backoff = 1s}));
#elif DECLARATION_CASE == 4  // one kind twice
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t,
                   QOS(qos::timeout{1s}, qos::timeout{2s}));
#elif DECLARATION_CASE == 5  // a fallback value that is not the result type
COROMESH_OPERATION(add, GET, "/api/v1/execute", Operands, std::int64_t, QOS(qos::fallback{"none"}));
#include <coromesh/qos/operation_qos.hpp>
auto fallback_interceptor = coromesh::qos::fallback_of<std::int64_t>(add.server);
#elif DECLARATION_CASE == 6  // a path that is not one
COROMESH_OPERATION(add, GET, "api/v1/execute", Operands, std::int64_t);
#endif

int main() {
  return 0;
}
