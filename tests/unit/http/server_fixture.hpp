#pragma once

// An in-process http::Server on 127.0.0.1 with a few routes, for hermetic tests.

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <memory>

#include "coromesh/http/server.hpp"
#include "http_fetch.hpp"
#include "test_env.hpp"

namespace coromesh::http::testing {

class ServerFixture {
 public:
  // Routes: GET /hello -> "hello"; GET /items/{id}; POST /echo (body back);
  // GET /sum?l=&r= (typed binding); GET /slow?l= (sleeps l ms; slow_cancelled counts the sleeps
  // cancelled); GET /throw; GET /throw-other (throws an int); GET /error; GET /stubborn?l= (sleeps,
  // ignoring the request's cancellation); GET /greet?name= (echoes `name` in the X-Greeting
  // header); GET /gated (waits until cancel_gate(), then fails with the wait's operation_aborted:
  // a handler whose own operation was cancelled by something other than a drain).
  // `observer`, when given, must outlive the fixture.
  explicit ServerFixture(ServerLimits limits = {}, std::size_t threads = 1,
                         ServerObserver* observer = nullptr);
  ~ServerFixture();

  std::uint16_t port() const { return server_->port(); }
  Server& server() { return *server_; }
  runtime::IoPool& pool() { return pool_; }
  coromesh::testing::FetchResult get(const std::string& target);
  coromesh::testing::FetchResult send(const std::string& method, const std::string& target,
                                      const std::string& body = {});
  std::string raw(const std::string& bytes,
                  std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Runs drain() on the pool and waits for its result.
  std::size_t shutdown(std::chrono::milliseconds grace);

  // Cancels the wait of every /gated request, on the pool's first thread.
  void cancel_gate();

  std::atomic<int> slow_started{0};
  std::atomic<int> slow_finished{0};
  std::atomic<int> slow_cancelled{0};
  std::atomic<int> stubborn_started{0};
  std::atomic<int> stubborn_finished{0};
  std::atomic<int> gated_started{0};

 private:
  runtime::IoPool pool_;
  boost::asio::steady_timer gate_;  // never expires: only cancel_gate() ends its waits
  Router router_;
  std::unique_ptr<Server> server_;
  bool stopped_ = false;
};

}  // namespace coromesh::http::testing
