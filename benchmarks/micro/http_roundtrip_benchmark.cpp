// One keep-alive HTTP/1.1 GET round trip through http::Client and http::Server on
// loopback: the server on its own io thread, the client on the benchmark's thread, one
// request at a time. Plain TCP, and mutual TLS through the TLS seam (certificates from
// tests/support/test_certificate_authority.hpp, contexts from the Connect module). Run:
// build/bin/bench_http_roundtrip.
//
// Absolute numbers depend on the box and are dominated by the two threads' wake-ups;
// compare plain before and after a change to the server or client, and TLS with plain.

#include <benchmark/benchmark.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <memory>

#include "coromesh/connect/tls_contexts.hpp"
#include "coromesh/http/client.hpp"
#include "coromesh/http/server.hpp"
#include "test_certificate_authority.hpp"

namespace {

namespace asio = boost::asio;
namespace http = coromesh::http;
using namespace std::chrono_literals;

class Rig {
 public:
  explicit Rig(bool tls) {
    router_.add(http::Verb::get, "/hello", "hello",
                [](http::RequestContext&) -> asio::awaitable<http::Response> {
                  http::Response response{http::Status::ok, 11};
                  response.body() = "hello";
                  co_return response;
                });
    server_ = std::make_unique<http::Server>(pool_, router_);
    destination_ = {"127.0.0.1", 0, nullptr};
    if (tls) {
      namespace connect = coromesh::connect;
      coromesh::testing::TestCertificateAuthority ca;
      auto server_context =
          connect::make_tls_context(connect::TlsRole::server, ca.leaf("api"), ca.roots());
      auto client_context =
          connect::make_tls_context(connect::TlsRole::client, ca.leaf("web"), ca.roots());
      http::ServerTls server_tls;
      server_tls.context = [server_context] { return server_context; };
      server_->enable_tls(std::move(server_tls));
      auto client_tls = std::make_shared<http::ClientTls>();
      client_tls->context = [client_context] { return client_context; };
      destination_.tls = std::move(client_tls);
    }
    server_->listen("127.0.0.1", 0);
    destination_.port = server_->port();
    server_->start();
    pool_.start();
  }

  ~Rig() {
    client_.close_idle();
    server_->stop_accepting();
    asio::co_spawn(pool_.executor(0), server_->drain(2s), asio::use_future).get();
    pool_.stop();
    pool_.join();
  }

  void run(benchmark::State& state) {
    asio::co_spawn(ioc_, loop(state), asio::detached);
    ioc_.run();
  }

 private:
  asio::awaitable<void> loop(benchmark::State& state) {
    for (auto _ : state) {
      auto response = co_await client_.get(destination_, "/hello", 5s);
      benchmark::DoNotOptimize(response);
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["connections"] = static_cast<double>(client_.connections_opened());
  }

  coromesh::runtime::IoPool pool_{1};
  http::Router router_;
  std::unique_ptr<http::Server> server_;
  asio::io_context ioc_;
  http::Client client_{ioc_.get_executor()};
  http::Destination destination_;
};

void BM_KeepAliveGetPlain(benchmark::State& state) {
  Rig rig(false);
  rig.run(state);
}
BENCHMARK(BM_KeepAliveGetPlain)->UseRealTime()->MinTime(2.0);

void BM_KeepAliveGetMutualTls(benchmark::State& state) {
  Rig rig(true);
  rig.run(state);
}
BENCHMARK(BM_KeepAliveGetMutualTls)->UseRealTime()->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
