// Garbage from a misbehaving "agent": a raw-socket HTTP peer on loopback that answers the
// Consul client with what a broken or hostile agent (or something else on its port)
// could send: HTML, truncated JSON and bodies, wrong types, huge values, a body that
// never ends, an answer that stalls. Each call fails with a clear error within its
// deadline and bounded memory, and a watch delivers only the good answers around them:
// the last good state is what its consumer keeps.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <iostream>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "coromesh/consul/http_agent_client.hpp"
#include "coromesh/consul/watch.hpp"
#include "coromesh/http/client.hpp"

namespace coromesh::consul {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using coromesh::testing::run_async;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What the peer does with one request.
struct Script {
  enum class Kind { bytes, endless_body, stall } kind = Kind::bytes;
  std::string bytes;  // written as they are (kind bytes), or first (endless_body, stall)
};

Script raw(std::string bytes) {
  return {Script::Kind::bytes, std::move(bytes)};
}

// A whole answer with an honest Content-Length.
Script answer(std::string_view status, std::string_view body, std::string_view index = "7",
              std::string_view type = "application/json") {
  return raw("HTTP/1.1 " + std::string(status) + "\r\nContent-Type: " + std::string(type) +
             "\r\nX-Consul-Index: " + std::string(index) +
             "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body));
}

// Plays the agent: one connection per request (the answer says Connection: close only
// by closing), each answered by the next script; the last script repeats.
class GarbageAgent {
 public:
  GarbageAgent(asio::io_context& ioc, std::deque<Script> scripts)
      : acceptor_(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        scripts_(std::move(scripts)) {
    asio::co_spawn(ioc, accept_loop(), asio::detached);
  }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

  std::size_t requests = 0;
  std::size_t endless_bytes_written = 0;  // by endless_body scripts, until the client left

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (ec) {
        co_return;
      }
      asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    std::string request;
    auto [ec, n] = co_await asio::async_read_until(socket, asio::dynamic_buffer(request),
                                                   "\r\n\r\n", use_tuple);
    if (ec) {
      co_return;
    }
    ++requests;
    Script script = scripts_.size() > 1 ? scripts_.front() : scripts_.back();
    if (scripts_.size() > 1) {
      scripts_.pop_front();
    }
    co_await asio::async_write(socket, asio::buffer(script.bytes), use_tuple);
    if (script.kind == Script::Kind::endless_body) {
      const std::string chunk = "10000\r\n" + std::string(0x10000, 'x') + "\r\n";
      for (;;) {  // ends when the client hangs up
        auto [wec, written] = co_await asio::async_write(socket, asio::buffer(chunk), use_tuple);
        if (wec) {
          break;
        }
        endless_bytes_written += written;
      }
    } else if (script.kind == Script::Kind::stall) {
      char byte = 0;  // until the client gives up
      co_await socket.async_read_some(asio::buffer(&byte, 1), use_tuple);
    }
  }

  tcp::acceptor acceptor_;
  std::deque<Script> scripts_;
};

constexpr std::string_view kGoodHealth =
    R"([{"Node": {"Node": "n", "Address": "10.0.0.1"},
         "Service": {"ID": "web-1", "Service": "web", "Port": 8080}, "Checks": []}])";

HttpAgentOptions fast_options(const GarbageAgent& agent) {
  return {.address = agent.address(), .request_timeout = 1s};
}

// The error one health query ends with (empty when it succeeded).
std::string health_error(asio::io_context& ioc, GarbageAgent& agent) {
  HttpAgentClient client(ioc.get_executor(), fast_options(agent));
  std::string error;
  run_async(ioc, [&]() -> asio::awaitable<void> {
    try {
      co_await client.health_service("web", true, {});
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) {
        error = "(an exception with an empty message)";
      }
    }
  }());
  return error;
}

TEST(HostileAgent, EachGarbageAnswerIsAClearError) {
  struct Case {
    const char* name;
    Script script;
    const char* error_mentions;
  };
  const std::vector<Case> cases{
      {"a 200 with an HTML body",
       answer("200 OK", "<html><body>Welcome to nginx!</body></html>", "7", "text/html"),
       "invalid JSON"},
      {"truncated JSON", answer("200 OK", kGoodHealth.substr(0, 40)), "invalid JSON"},
      {"wrong types", answer("200 OK", R"([{"Node": {}, "Service": {"Port": [8080]}}])"),
       "field Port is not an integer"},
      {"a port of 10^30", answer("200 OK", R"([{"Node": {}, "Service": {"Port": 1e30}}])"),
       "field Port is not an integer"},
      {"an index past uint64", answer("200 OK", "[]", "99999999999999999999999"),
       "X-Consul-Index is not a number"},
      {"a body shorter than its Content-Length",
       raw("HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nContent-Length: 1000\r\n\r\n[{\"Node\""),
       "closed"},
      {"not HTTP at all", raw("SSH-2.0-OpenSSH_9.2\r\n"), "bad"},
      {"a header block of 100 KiB",
       raw("HTTP/1.1 200 OK\r\nX-Junk: " + std::string(100 * 1024, 'j') + "\r\n\r\n"), "bad"},
      {"a body over the client's 16 MiB limit",
       raw("HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nContent-Length: 17000000\r\n\r\n"), "exceeds"},
      {"a 500 with an HTML error page",
       answer("500 Internal Server Error", "<html>oops</html>", "7", "text/html"), "500"},
  };
  for (const auto& c : cases) {
    asio::io_context ioc;
    GarbageAgent agent(ioc, {c.script});
    const auto error = health_error(ioc, agent);
    EXPECT_NE(error.find(c.error_mentions), std::string::npos)
        << c.name << ": got '" << error << "'";
    std::cout << c.name << " -> " << error << "\n";  // the messages RELIABILITY.md quotes
  }
}

// A body that never ends is cut off at the client's body limit: memory stays bounded.
TEST(HostileAgent, ANeverEndingBodyIsCutOffAtTheBodyLimit) {
  asio::io_context ioc;
  GarbageAgent agent(
      ioc, {{Script::Kind::endless_body,
             "HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nTransfer-Encoding: chunked\r\n\r\n"}});
  const auto error = health_error(ioc, agent);
  EXPECT_NE(error.find("exceeds"), std::string::npos) << error;
  // What the peer managed to write: the limit plus what the socket buffers hold.
  EXPECT_LT(agent.endless_bytes_written, 16U * 1024 * 1024 + 16U * 1024 * 1024)
      << agent.endless_bytes_written;
}

// An answer that starts and then stalls ends at the call's deadline, not never.
TEST(HostileAgent, AStalledAnswerEndsAtTheDeadline) {
  asio::io_context ioc;
  GarbageAgent agent(ioc,
                     {{Script::Kind::stall,
                       "HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nContent-Length: 100\r\n\r\n["}});
  const auto started = std::chrono::steady_clock::now();
  const auto error = health_error(ioc, agent);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_NE(error.find("timed out"), std::string::npos) << error;
  EXPECT_LT(took, 10s);
}

// A watch between good answers and garbage: the callback sees the good answers only, so
// its consumer keeps the last good state; the watch survives every bad answer.
TEST(HostileAgent, AWatchDeliversOnlyTheGoodAnswers) {
  asio::io_context ioc;
  constexpr std::string_view kOtherHealth =
      R"([{"Node": {"Node": "n"}, "Service": {"ID": "web-2", "Service": "web", "Port": 8081}}])";
  GarbageAgent agent(ioc,
                     {answer("200 OK", kGoodHealth, "5"),
                      answer("200 OK", "<html>maintenance</html>", "6", "text/html"),
                      answer("200 OK", R"([{"Node": 1, "Service": {}}])", "6"),
                      raw("HTTP/1.1 200 OK\r\nX-Consul-Index: 6\r\nContent-Length: 99\r\n\r\n["),
                      answer("200 OK", "[]", "oops"), answer("200 OK", kOtherHealth, "8")});
  HttpAgentClient client(ioc.get_executor(), fast_options(agent));
  std::vector<std::vector<ServiceInstance>> delivered;
  asio::cancellation_signal stop;
  run_async(ioc, [&]() -> asio::awaitable<void> {
    asio::co_spawn(
        ioc,
        watch_health_service(client, "web", true,
                             [&](const std::vector<ServiceInstance>& instances) {
                               delivered.push_back(instances);
                               if (delivered.size() == 2) {
                                 stop.emit(asio::cancellation_type::terminal);
                               }
                             },
                             {.wait = 200ms, .backoff_initial = 10ms, .backoff_max = 50ms}),
        asio::bind_cancellation_slot(stop.slot(), asio::detached));
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (int i = 0; i < 1000 && delivered.size() < 2; ++i) {
      timer.expires_after(10ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
  }());
  ASSERT_EQ(delivered.size(), 2U) << "after " << agent.requests << " requests";
  ASSERT_EQ(delivered[0].size(), 1U);
  EXPECT_EQ(delivered[0][0].id, "web-1");
  ASSERT_EQ(delivered[1].size(), 1U);
  EXPECT_EQ(delivered[1][0].id, "web-2");
  EXPECT_GE(agent.requests, 6U);
}

}  // namespace
}  // namespace coromesh::consul
