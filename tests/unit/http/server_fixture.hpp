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
  // GET /sum?l=&r= (typed binding); GET /slow?ms= (sleeps); GET /throw;
  // GET /throw-other (throws an int); GET /error;
  // GET /greet?name= (echoes `name` in the X-Greeting header).
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

  std::atomic<int> slow_started{0};
  std::atomic<int> slow_finished{0};

 private:
  runtime::IoPool pool_;
  Router router_;
  std::unique_ptr<Server> server_;
  bool stopped_ = false;
};

}  // namespace coromesh::http::testing
