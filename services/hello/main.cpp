// hello-svc: the smallest complete coromesh service. It serves a declared operation with
// QoS and a raw route, registers with Consul (the QoS shows in its Meta as `qos_greet`),
// exposes /health and /metrics, and shuts down gracefully.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <coromesh/service/service.hpp>

struct Greeting {
  std::string name;
  std::optional<std::int64_t> delay_ms;  // lets tests keep requests in flight
};
BOOST_DESCRIBE_STRUCT(Greeting, (), (name, delay_ms))

struct Reply {
  std::string message;
};
BOOST_DESCRIBE_STRUCT(Reply, (), (message))

// Generous limits: the example shows the declaration, the load benchmarks measure the
// server. Change them live with `consul kv put coromesh/qos/hello/greet '{...}'`.
COROMESH_OPERATION(greet, GET, "/api/v1/hello", Greeting, Reply,
                   QOS(qos::timeout{15s}, qos::rate_limit{.permits = 100'000, .period = 1s},
                       qos::bulkhead{1024}));

boost::asio::awaitable<Reply> say_hello(Greeting in) {
  if (in.delay_ms && *in.delay_ms > 0) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    timer.expires_after(std::chrono::milliseconds(std::min<std::int64_t>(*in.delay_ms, 10'000)));
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
  co_return Reply{"hello, " + in.name};
}

int main(int argc, char** argv) {
  coromesh::Service service({.defaults = {.name = "hello"}, .description = "Says hello."}, argc,
                            argv);
  service.serve(greet, say_hello);
  service.route(
      coromesh::http::Verb::get, "/hello", "plain",
      [](coromesh::http::RequestContext&) -> boost::asio::awaitable<coromesh::http::Response> {
        co_return coromesh::http::make_text_response(coromesh::http::Status::ok, "hello");
      });
  return service.run();
}
