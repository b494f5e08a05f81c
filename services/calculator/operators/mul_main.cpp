// mul-svc: GET /api/v1/execute?l=6&r=7 -> 42, 64-bit checked (calculator_api.hpp).
#include <coromesh/service/service.hpp>

#include "calculator/api/calculator_api.hpp"
#include "calculator/operators/answer.hpp"

int main(int argc, char** argv) {
  using calculator::api::Operands;
  coromesh::Service service(
      {.defaults = {.name = "mul-svc"}, .description = "Multiplies two 64-bit integers."}, argc,
      argv);
  service.serve(calculator::api::mul, [](Operands in) -> boost::asio::awaitable<std::int64_t> {
    co_return calculator::operators::value_or_422(calculator::arithmetic::multiply(in.l, in.r), "*",
                                                  in);
  });
  return service.run();
}
