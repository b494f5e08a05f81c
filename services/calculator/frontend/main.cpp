// frontend: POST /api/v1/compute {"expression":"1+2*3"} -> {"result":7}, each operation
// one call to add-svc, sub-svc, mul-svc, div-svc or mod-svc at
// --upstreams add=HOST:PORT,sub=...,mod=HOST:PORT
#include <atomic>
#include <coromesh/service/service.hpp>
#include <string>

#include "calculator/api/calculator_api.hpp"
#include "calculator/frontend/calculator.hpp"

namespace {
boost::asio::awaitable<coromesh::http::Response> ready(coromesh::http::Response response) {
  co_return response;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace calculator;
  std::atomic<std::uint64_t> ivt_count{0};  // the seed's installation check: calls so far
  coromesh::Service service(
      {.defaults = {.name = "frontend"}, .description = "Evaluates arithmetic expressions."}, argc,
      argv);
  const frontend::Calculator calculator(service);
  service.serve(api::compute, [&calculator](api::ComputeRequest in, coromesh::CallContext call) {
    return calculator.compute(std::move(in), call);
  });
  service.route(coromesh::http::Verb::get, "/ivt", "ivt",
                [&ivt_count](coromesh::http::RequestContext&) {
                  return ready(coromesh::http::make_text_response(
                      coromesh::http::Status::ok, "ivt-test: " + std::to_string(++ivt_count)));
                });
  return service.run();
}
