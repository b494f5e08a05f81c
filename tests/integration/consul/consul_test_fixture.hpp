#pragma once

// The shared set-up of the consul integration tests: a real agent, an io_context run on
// the test's thread, an HttpAgentClient on it, and helpers for test bodies written as
// coroutines. GoogleTest's ASSERT_* cannot be used in coroutines (they `return`): test
// bodies use EXPECT_* and `co_return`, or throw.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <functional>
#include <thread>

#include "consul_agent.hpp"
#include "coromesh/consul/http_agent_client.hpp"

namespace coromesh::consul {

namespace asio = boost::asio;

inline asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

// Polls `done` (every 20ms) until it holds or `timeout` passes; returns its last value.
inline asio::awaitable<bool> eventually(std::function<bool()> done,
                                        std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      co_return false;
    }
    co_await sleep_for(std::chrono::milliseconds(20));
  }
  co_return true;
}

// As eventually(), for a condition that needs the agent.
template <class Probe>
asio::awaitable<bool> eventually_async(Probe probe, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool done = co_await probe();  // (not in the condition: g++ 12 miscompiles that)
    if (done) {
      co_return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      co_return false;
    }
    co_await sleep_for(std::chrono::milliseconds(50));
  }
}

// Runs a blocking fixture call (ConsulAgent::restart takes seconds) on another thread
// while the io_context keeps serving the code under test.
inline asio::awaitable<void> off_loop(std::function<void()> blocking) {
  std::atomic<bool> finished{false};
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      blocking();
    } catch (...) {
      error = std::current_exception();
    }
    finished = true;
  });
  struct Join {
    std::thread& thread;
    ~Join() { thread.join(); }
  } join{worker};
  while (!finished) {
    co_await sleep_for(std::chrono::milliseconds(20));
  }
  if (error) {
    std::rethrow_exception(error);
  }
}

// For an agent started with limits { http_max_conns_per_client = 1 }: connects `other`
// (a socket on any io_context) and returns once the agent counts it, so that it answers
// every other new connection from this host with 429 Too Many Requests; false if that did
// not happen within 5s. A connection the agent has not yet seen close still counts: an
// `other` refused because of it (answered 429 and closed) is tried again.
inline bool take_the_only_connection(const coromesh::testing::ConsulAgent& consul,
                                     asio::ip::tcp::socket& other) {
  return coromesh::testing::wait_until(
      [&] {
        boost::system::error_code ignored;
        other.close(ignored);
        other.connect({asio::ip::make_address("127.0.0.1"), consul.http_port()});
        if (consul.api("GET", "/v1/status/leader").status != 429) {
          return false;
        }
        // The agent handles new connections in order: had it refused `other`, its 429
        // would be here before the probe's.
        other.non_blocking(true);
        char byte = 0;
        boost::system::error_code read;
        other.read_some(asio::buffer(&byte, 1), read);
        other.non_blocking(false);
        return read == asio::error::would_block;
      },
      std::chrono::seconds(5), std::chrono::milliseconds(50));
}

class ConsulIntegration : public ::testing::Test {
 protected:
  explicit ConsulIntegration(coromesh::testing::ConsulAgentOptions options = {})
      : consul_(std::move(options)),
        agent_(ioc_.get_executor(),
               {.address = consul_.http_address(), .request_timeout = std::chrono::seconds(2)}) {}

  // Runs a test body until it returns; a body still running after `limit` fails the test.
  void run(asio::awaitable<void> body, std::chrono::seconds limit = std::chrono::seconds(60)) {
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(ioc_, std::move(body), [&](std::exception_ptr e) {
      error = e;
      done = true;
      ioc_.stop();
    });
    ioc_.restart();
    ioc_.run_for(limit);
    ASSERT_TRUE(done) << "the test body did not finish within " << limit.count() << "s";
    if (error) {
      std::rethrow_exception(error);
    }
  }

  coromesh::testing::ConsulAgent consul_;
  asio::io_context ioc_;
  HttpAgentClient agent_;
};

}  // namespace coromesh::consul
