// div-svc: GET /api/v1/execute?l=7&r=2 -> 3, 64-bit checked (calculator_api.hpp).
#include <coromesh/service/service.hpp>

#include "calculator/api/calculator_api.hpp"
#include "calculator/operators/answer.hpp"

int main(int argc, char** argv) {
  using calculator::api::Operands;
  coromesh::Service service(
      {.defaults = {.name = "div-svc"}, .description = "Divides two 64-bit integers."}, argc, argv);
  service.serve(calculator::api::div, [](Operands in) -> boost::asio::awaitable<std::int64_t> {
    co_return calculator::operators::value_or_422(calculator::arithmetic::divide(in.l, in.r), "/",
                                                  in);
  });
  return service.run();
}
