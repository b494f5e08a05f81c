// The g++ < 13 guard of OperationClient::execute (service/operation_client.hpp), compiled
// by the toolchain.* CTest cases with one AWAITED_CASE defined; see CMakeLists.txt here.
// g++ 12 destroys a temporary created in a co_await operand twice, so with it an rvalue
// argument that has a destructor must not compile; an lvalue must, and under clang the
// README's rvalue line must compile as written.

#include <boost/describe.hpp>
#include <coromesh/service/operation_client.hpp>
#include <cstdint>
#include <string>

struct Order {
  std::string sku;  // a destructor: what g++ 12 runs twice
  std::int64_t qty = 0;
};
BOOST_DESCRIBE_STRUCT(Order, (), (sku, qty))

COROMESH_OPERATION(place, POST, "/api/v1/orders", Order, std::int64_t);

boost::asio::awaitable<std::int64_t> caller(
    const coromesh::OperationClient<decltype(place)>& client, const coromesh::CallContext& call) {
#if AWAITED_CASE == 0  // the README's call: a designated-initializer temporary
  co_return co_await client.execute({.sku = "a string over 15 chars", .qty = 2}, call);
#elif AWAITED_CASE == 1  // a named temporary, without a CallContext
  co_return co_await client.execute(Order{"a string over 15 chars", 2});
#elif AWAITED_CASE == 2  // the fix: an lvalue
  Order order{.sku = "a string over 15 chars", .qty = 2};
  co_return co_await client.execute(order, call);
#endif
}

int main() {
  return 0;
}
