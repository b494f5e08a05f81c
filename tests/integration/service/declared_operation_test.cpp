// Two in-process services on loopback: `relay` calls `echo` through the typed client
// stub. Shows what one declaration gives both sides: the deadline shortened across two
// hops and refused when spent, the trace continued, retries of a flaky callee, the
// caller's circuit breaker opening, and the HTTP answer for each outcome.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <coromesh/log/logger.hpp>
#include <coromesh/runtime/io_pool.hpp>
#include <coromesh/service/service.hpp>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http_fetch.hpp"
#include "in_process_service.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

struct Probe {
  std::int64_t value = 0;
  std::optional<std::int64_t> delay_ms;    // the relay waits this long before its call
  std::optional<std::int64_t> fail_first;  // echo answers 503 to its first N calls
  std::optional<std::int64_t> refuse;      // echo answers 400 (the caller erred) when set
};
BOOST_DESCRIBE_STRUCT(Probe, (), (value, delay_ms, fail_first, refuse))

struct Seen {
  std::int64_t value = 0;
  std::int64_t deadline_ms = -1;  // echo's remaining deadline when called; -1: none
  std::string trace_id;
};
BOOST_DESCRIBE_STRUCT(Seen, (), (value, deadline_ms, trace_id))

COROMESH_OPERATION(
    echo, GET, "/api/v1/echo", Probe, Seen, QOS(qos::bulkhead{64}),
    CLIENT_QOS(qos::timeout{.per_attempt = 500ms, .mode = qos::TimeoutMode::deadline},
               qos::retry{.max_attempts = 3, .base_backoff = 1ms, .max_backoff = 4ms},
               qos::circuit_breaker{
                   .failure_rate = 0.5, .window = 4, .minimum_calls = 4, .open_for = 60s}));
COROMESH_OPERATION(relay, GET, "/api/v1/relay", Probe, Seen, QOS(qos::timeout{5s}));
// The relay again, behind a breaker of its own that opens after two failures.
COROMESH_OPERATION(guarded_relay, GET, "/api/v1/guarded-relay", Probe, Seen,
                   QOS(qos::circuit_breaker{
                       .failure_rate = 0.5, .window = 2, .minimum_calls = 2, .open_for = 60s}));
// One at a time, the second caller refused; a POST (JSON body) answered by a fallback
// when the bulkhead of `guarded` refuses.
COROMESH_OPERATION(gate, GET, "/api/v1/gate", Probe, Seen, QOS(qos::bulkhead{1}));
// A result with a std::string is no literal type: its fallback is a function.
Seen refused(const coromesh::qos::Fault&) {
  return Seen{.value = -1};
}
COROMESH_OPERATION(guarded, POST, "/api/v1/guarded", Probe, Seen,
                   QOS(qos::bulkhead{1}, qos::fallback{&refused}));

coromesh::config::ServiceConfig in_process(std::string name) {
  return coromesh::testing::in_process(std::move(name), coromesh::log::Level::warn);
}

class DeclaredOperation : public ::testing::Test {
 protected:
  void SetUp() override {
    echo_service = std::make_unique<coromesh::Service>(in_process("echo"));
    echo_service->serve(
        echo, [this](Probe in, const coromesh::CallContext& call) -> asio::awaitable<Seen> {
          const auto n = ++echo_calls;
          if (in.refuse) {
            throw coromesh::http::HttpError(coromesh::http::Status::bad_request, "refused",
                                            "refusing on purpose");
          }
          if (in.fail_first && n <= *in.fail_first) {
            throw coromesh::http::HttpError(coromesh::http::Status::service_unavailable, "flaky",
                                            "failing on purpose");
          }
          const auto remaining =
              call.deadline.is_set()
                  ? std::chrono::duration_cast<std::chrono::milliseconds>(call.deadline.remaining())
                        .count()
                  : -1;
          co_return Seen{in.value, remaining, std::string(call.trace_id)};
        });
    auto slow = [](Probe in) -> asio::awaitable<Seen> {
      asio::steady_timer timer(co_await asio::this_coro::executor,
                               std::chrono::milliseconds(in.delay_ms.value_or(0)));
      co_await timer.async_wait(asio::use_awaitable);
      co_return Seen{in.value, -1, {}};
    };
    echo_service->serve(gate, slow);
    echo_service->serve(guarded, slow);
    echo_service->start();

    relay_service = std::make_unique<coromesh::Service>(in_process("relay"));
    auto& echo_client =
        relay_service->client(echo, {.host = "127.0.0.1", .port = echo_service->port()});
    relay_service->serve(
        relay,
        [&echo_client](Probe in, const coromesh::CallContext& call) -> asio::awaitable<Seen> {
          if (in.delay_ms) {
            asio::steady_timer timer(co_await asio::this_coro::executor,
                                     std::chrono::milliseconds(*in.delay_ms));
            co_await timer.async_wait(asio::use_awaitable);
          }
          Probe onward{in.value, std::nullopt, in.fail_first, in.refuse};
          co_return co_await echo_client.execute(onward, call);
        });
    relay_service->serve(
        guarded_relay,
        [&echo_client](Probe in, const coromesh::CallContext& call) -> asio::awaitable<Seen> {
          co_return co_await echo_client.execute(in, call);  // echo's errors escape
        });
    relay_service->start();
  }

  void TearDown() override {
    relay_service->request_shutdown();
    relay_service->wait();
    echo_service->request_shutdown();
    echo_service->wait();
  }

  coromesh::testing::FetchResult relay_get(const std::string& query,
                                           std::map<std::string, std::string> headers = {}) {
    return coromesh::testing::http_fetch("127.0.0.1", relay_service->port(),
                                         "/api/v1/relay?" + query, {.headers = std::move(headers)});
  }

  static json::object body_of(const coromesh::testing::FetchResult& result) {
    return json::parse(result.body).as_object();
  }

  std::atomic<int> echo_calls{0};
  std::unique_ptr<coromesh::Service> echo_service;
  std::unique_ptr<coromesh::Service> relay_service;
};

TEST_F(DeclaredOperation, TheDeadlineTravelsOnShortenedByTheTimeSpent) {
  auto result = relay_get("value=7&delay_ms=100", {{"x-coromesh-deadline-ms", "300"}});
  ASSERT_EQ(result.status, 200) << result.body;
  const auto seen = body_of(result);
  EXPECT_EQ(seen.at("value").as_int64(), 7);
  const auto remaining = seen.at("deadline_ms").as_int64();
  // 300 ms given, 100 ms spent at the relay: echo gets at most 200 ms, and some of it.
  EXPECT_LE(remaining, 200);
  EXPECT_GT(remaining, 50);
  std::cout << "[ deadline ] 300 ms at the relay, 100 ms spent there, echo saw " << remaining
            << " ms\n";
}

TEST_F(DeclaredOperation, WithoutACallerDeadlineTheClientTimeoutBecomesTheDeadline) {
  auto result = relay_get("value=1");
  ASSERT_EQ(result.status, 200) << result.body;
  const auto remaining = body_of(result).at("deadline_ms").as_int64();
  EXPECT_LE(remaining, 500);
  EXPECT_GT(remaining, 300);
}

TEST_F(DeclaredOperation, TheTraceContinuesToTheNextHop) {
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  auto result = relay_get("value=1", {{"traceparent", "00-" + trace + "-00f067aa0ba902b7-01"}});
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(body_of(result).at("trace_id").as_string(), trace);
}

TEST_F(DeclaredOperation, ASpentDeadlineIsRefusedWithoutCallingTheNextHop) {
  auto result = relay_get("value=1&delay_ms=150", {{"x-coromesh-deadline-ms", "100"}});
  EXPECT_EQ(result.status, 504) << result.body;
  EXPECT_EQ(body_of(result).at("error").as_string(), "deadline_exceeded");
  EXPECT_EQ(echo_calls.load(), 0) << "echo was called with no time left";
}

TEST_F(DeclaredOperation, TheCalleeRefusesAnExpiredDeadlineAndCountsIt) {
  auto result =
      coromesh::testing::http_fetch("127.0.0.1", echo_service->port(), "/api/v1/echo?value=1",
                                    {.headers = {{"x-coromesh-deadline-ms", "0"}}});
  EXPECT_EQ(result.status, 504);
  EXPECT_EQ(body_of(result).at("error").as_string(), "deadline_exceeded");
  EXPECT_EQ(echo_calls.load(), 0);
  auto metrics = coromesh::testing::http_fetch("127.0.0.1", echo_service->port(), "/metrics");
  EXPECT_NE(
      metrics.body.find(
          R"(coromesh_qos_rejections_total{operation="echo",policy="deadline",reason="deadline_exceeded",side="server"} 1)"),
      std::string::npos)
      << metrics.body.substr(0, 2000);
}

TEST_F(DeclaredOperation, AMalformedDeadlineIsABadRequest) {
  for (const char* bad : {"-5", "soon", "1.5", "99999999999999999999"}) {
    auto result = relay_get("value=1", {{"x-coromesh-deadline-ms", bad}});
    EXPECT_EQ(result.status, 400) << bad;
    EXPECT_EQ(body_of(result).at("error").as_string(), "invalid_deadline") << bad;
  }
  EXPECT_EQ(echo_calls.load(), 0);
}

TEST_F(DeclaredOperation, TheClientRetriesAFlakyCallee) {
  auto result = relay_get("value=3&fail_first=2");
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(echo_calls.load(), 3);
}

TEST_F(DeclaredOperation, TheCallersBreakerOpensAndStopsCallingTheCallee) {
  // Each relay call makes 3 failing attempts; the breaker's window of 4 fills during the
  // second call, and it opens.
  auto first = relay_get("value=1&fail_first=1000");
  EXPECT_EQ(first.status, 503) << first.body;
  EXPECT_EQ(body_of(first).at("error").as_string(), "flaky");
  (void)relay_get("value=1&fail_first=1000");
  const int calls_before = echo_calls.load();
  auto refused = relay_get("value=1&fail_first=1000");
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(body_of(refused).at("error").as_string(), "circuit_open");
  EXPECT_EQ(echo_calls.load(), calls_before) << "an open breaker still called the callee";
  auto metrics = coromesh::testing::http_fetch("127.0.0.1", relay_service->port(), "/metrics");
  // The client side is as visible as the server side: its rejections, its refused
  // calls and its breaker's state. Two refusals: the second call's retry, then the third.
  for (
      const char* series :
      {R"(coromesh_qos_rejections_total{operation="echo",policy="circuit_breaker",reason="circuit_open",side="client"} 2)",
       R"(coromesh_qos_calls_total{operation="echo",result="rejected",side="client"} 2)",
       R"(coromesh_qos_calls_total{operation="echo",result="error",side="client"})",
       R"(coromesh_qos_circuit_breaker_state{operation="echo",side="client",state="open"} 1)"}) {
    EXPECT_NE(metrics.body.find(series), std::string::npos) << series << "\n"
                                                            << metrics.body.substr(0, 4000);
  }
}

TEST_F(DeclaredOperation, ARefusalOfTheHandlersOwnCallIsTheOperationsFailureNotItsRefusal) {
  // As above, echo's breaker (relay's client side) opens during the second call and
  // refuses the third. Those refusals reach relay's caller as 503 circuit_open, which
  // its client counts as relay's failure: relay's own chain must count them so too, not
  // as refusals of relay's own policies (which it has none of but a timeout).
  for (int i = 0; i < 3; ++i) {
    auto answer = relay_get("value=1&fail_first=1000");
    EXPECT_EQ(answer.status, 503) << answer.body;
  }
  auto refused = relay_get("value=1&fail_first=1000");
  EXPECT_EQ(body_of(refused).at("error").as_string(), "circuit_open");
  EXPECT_EQ(body_of(refused).at("policy").as_string(), "circuit_breaker");
  auto metrics = coromesh::testing::http_fetch("127.0.0.1", relay_service->port(), "/metrics");
  for (const char* series :
       {R"(coromesh_qos_calls_total{operation="relay",result="error",side="server"} 4)",
        R"(coromesh_qos_calls_total{operation="relay",result="rejected",side="server"} 0)"}) {
    EXPECT_NE(metrics.body.find(series), std::string::npos) << series << "\n"
                                                            << metrics.body.substr(0, 4000);
  }
}

TEST_F(DeclaredOperation, AnUpstreams4xxThatEscapesAHandlerIsTheOperationsOwnFailure) {
  // echo says 400 to what guarded_relay sent it: guarded_relay's caller did nothing wrong
  // and is answered 502, so guarded_relay's breaker counts it as a failure and opens.
  for (int i = 0; i < 2; ++i) {
    auto answer = coromesh::testing::http_fetch("127.0.0.1", relay_service->port(),
                                                "/api/v1/guarded-relay?value=1&refuse=1");
    EXPECT_EQ(answer.status, 502) << answer.body;
    EXPECT_EQ(body_of(answer).at("error").as_string(), "refused");
  }
  ASSERT_EQ(echo_calls.load(), 2) << "echo's 400 is the caller's fault: never retried";
  auto refused = coromesh::testing::http_fetch("127.0.0.1", relay_service->port(),
                                               "/api/v1/guarded-relay?value=1&refuse=1");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(body_of(refused).at("error").as_string(), "circuit_open");
  EXPECT_EQ(echo_calls.load(), 2) << "guarded_relay's open breaker still ran the handler";
  // Whose fault, in the metrics: echo's 400 is guarded_relay's own (the caller's) error on
  // its client side, not echo's failure; guarded_relay's 502s are its server side's errors.
  auto metrics = coromesh::testing::http_fetch("127.0.0.1", relay_service->port(), "/metrics");
  for (const char* series :
       {R"(coromesh_qos_calls_total{operation="echo",result="caller_error",side="client"} 2)",
        R"(coromesh_qos_calls_total{operation="echo",result="error",side="client"} 0)",
        R"(coromesh_qos_calls_total{operation="guarded_relay",result="error",side="server"} 2)"}) {
    EXPECT_NE(metrics.body.find(series), std::string::npos) << series << "\n"
                                                            << metrics.body.substr(0, 4000);
  }
}

TEST_F(DeclaredOperation, AServiceMakesOneClientPerOperationWhateverTheThread) {
  const coromesh::http::Destination at{.host = "127.0.0.1", .port = echo_service->port()};
  std::vector<std::thread> threads;
  std::vector<const void*> seen(8);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&, i] { seen[i] = &relay_service->client(echo, at); });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  for (const void* client : seen) {
    EXPECT_EQ(client, seen.front()) << "a second client (and a second metric series) was made";
  }
  EXPECT_THROW(relay_service->client(echo, {.host = "127.0.0.1", .port = 1}), std::logic_error)
      << "the same operation at another address";
  auto metrics = coromesh::testing::http_fetch("127.0.0.1", relay_service->port(), "/metrics");
  const std::string series =
      R"(coromesh_qos_calls_total{operation="echo",result="ok",side="client"})";
  const auto first = metrics.body.find(series);
  ASSERT_NE(first, std::string::npos) << metrics.body.substr(0, 3000);
  EXPECT_EQ(metrics.body.find(series, first + 1), std::string::npos) << "a duplicate series";
}

TEST_F(DeclaredOperation, AFullBulkheadIsA503AndAFallbackAnswersInstead) {
  for (const auto& [target, method] : {std::pair{"/api/v1/gate?value=1&delay_ms=400", "GET"},
                                       std::pair{"/api/v1/guarded", "POST"}}) {
    const coromesh::testing::FetchOptions slow{.method = method,
                                               .body = R"({"value": 1, "delay_ms": 400})"};
    std::thread first([&] {
      EXPECT_EQ(
          coromesh::testing::http_fetch("127.0.0.1", echo_service->port(), target, slow).status,
          200);
    });
    std::this_thread::sleep_for(100ms);  // the first call holds the only slot
    const coromesh::testing::FetchOptions quick{.method = method,
                                                .body = R"({"value": 2, "delay_ms": 0})"};
    auto second = coromesh::testing::http_fetch("127.0.0.1", echo_service->port(), target, quick);
    first.join();
    if (std::string(method) == "GET") {
      EXPECT_EQ(second.status, 503) << second.body;
      EXPECT_EQ(body_of(second).at("error").as_string(), "bulkhead_full");
    } else {
      EXPECT_EQ(second.status, 200) << second.body;
      EXPECT_EQ(body_of(second).at("value").as_int64(), -1) << "the fallback's value";
    }
  }
}

// A callee that answers 200 with a body that is not the declared result: its fault, not
// the end user's. The caller answers 502 invalid_response, and its breaker counts it.
TEST(DeclaredOperationFaults, AnUndecodableAnswerIsTheCalleesFaultAndOpensTheBreaker) {
  coromesh::Service liar(in_process("echo"));
  std::atomic<int> answered{0};
  liar.route(
      coromesh::http::Verb::get, "/api/v1/echo", "echo",
      [&answered](coromesh::http::RequestContext&) -> asio::awaitable<coromesh::http::Response> {
        ++answered;
        co_return coromesh::http::make_json_response(coromesh::http::Status::ok,
                                                     R"({"value": "not a number"})");
      });
  liar.start();
  coromesh::Service caller(in_process("relay"));
  auto& echo_client = caller.client(echo, {.host = "127.0.0.1", .port = liar.port()});
  caller.serve(
      relay, [&echo_client](Probe in, const coromesh::CallContext& call) -> asio::awaitable<Seen> {
        co_return co_await echo_client.execute(in, call);
      });
  caller.start();
  auto get = [&] {
    return coromesh::testing::http_fetch("127.0.0.1", caller.port(), "/api/v1/relay?value=1");
  };
  auto first = get();
  EXPECT_EQ(first.status, 502) << first.body;
  EXPECT_EQ(json::parse(first.body).at("error").as_string(), "invalid_response") << first.body;
  (void)get();
  const int answered_before = answered.load();
  auto refused = get();
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(json::parse(refused.body).at("error").as_string(), "circuit_open");
  EXPECT_EQ(answered.load(), answered_before);
  caller.request_shutdown();
  caller.wait();
  liar.request_shutdown();
  liar.wait();
}

TEST(DeclaredOperationConfig, AClientFindsItsUpstreamInTheConfiguration) {
  auto echo_config = in_process("echo");
  coromesh::Service echo_service(echo_config);
  echo_service.serve(echo, [](Probe in) -> asio::awaitable<Seen> { co_return Seen{in.value}; });
  echo_service.start();

  auto caller_config = in_process("caller");
  caller_config.upstreams =
      coromesh::config::parse_upstreams("echo=127.0.0.1:" + std::to_string(echo_service.port()));
  coromesh::Service caller(caller_config);
  auto& client = caller.client(echo);  // no address in the code
  caller.start();
  std::promise<std::int64_t> answer;
  asio::co_spawn(
      caller.pool().executor(0),
      [&]() -> asio::awaitable<void> {
        const Seen seen = co_await client.execute(Probe{.value = 11});
        answer.set_value(seen.value);
      },
      asio::detached);
  EXPECT_EQ(answer.get_future().get(), 11);
  EXPECT_THROW(caller.client(relay), coromesh::config::ConfigError)
      << "an operation without a configured upstream";
  caller.request_shutdown();
  caller.wait();
  echo_service.request_shutdown();
  echo_service.wait();
}

// A POST's argument is its JSON body, which may hold what no query string can: a list of
// nested structs. serve() and the route compiled the query string's binding for every
// argument, so such an operation did not compile ("query binding supports scalars,
// strings and std::optional") though its declaration did.
struct OrderLine {
  std::string sku;
  std::int64_t quantity = 0;
};
BOOST_DESCRIBE_STRUCT(OrderLine, (), (sku, quantity))
struct Order {
  std::vector<OrderLine> lines;
  std::optional<std::vector<std::string>> notes;
};
BOOST_DESCRIBE_STRUCT(Order, (), (lines, notes))
COROMESH_OPERATION(place_order, POST, "/api/v1/order", Order, std::int64_t, QOS(qos::timeout{5s}),
                   CLIENT_QOS(qos::timeout{5s}));

TEST(DeclaredOperationConfig, APostArgumentMayHoldAListOfStructs) {
  coromesh::Service orders(in_process("orders"));
  orders.serve(place_order, [](Order in) -> asio::awaitable<std::int64_t> {
    std::int64_t total = 0;
    for (const auto& line : in.lines) {
      total += line.quantity;
    }
    co_return total;
  });
  // A hand-made route has no declaration to check: it is refused when it is made.
  EXPECT_THROW(orders.route<Order>(coromesh::http::Verb::get, "/api/v1/order-by-query", "by_query",
                                   [](Order) -> asio::awaitable<std::int64_t> { co_return 0; }),
               std::invalid_argument);
  orders.start();
  coromesh::testing::FetchOptions post{.method = "POST"};
  post.body = R"({"lines": [{"sku": "apple", "quantity": 2}, {"sku": "pear", "quantity": 5}]})";
  auto answer = coromesh::testing::http_fetch("127.0.0.1", orders.port(), "/api/v1/order", post);
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.body, "7");
  post.body = R"({"lines": [{"sku": "apple", "quantity": "2"}]})";
  answer = coromesh::testing::http_fetch("127.0.0.1", orders.port(), "/api/v1/order", post);
  EXPECT_EQ(answer.status, 400);
  EXPECT_EQ(
      answer.body,
      R"({"error":"invalid_field","reason":"JSON body field 'lines[0].quantity': expected an integer"})");

  coromesh::Service caller(in_process("caller"));
  auto& client = caller.client(place_order, {"127.0.0.1", orders.port()});
  caller.start();
  std::promise<std::int64_t> total;
  asio::co_spawn(
      caller.pool().executor(0),
      [&]() -> asio::awaitable<void> {
        Order order{.lines = {{"fig", 3}, {"kiwi", 4}}, .notes = std::nullopt};
        total.set_value(co_await client.execute(order));
      },
      asio::detached);
  EXPECT_EQ(total.get_future().get(), 7);
  caller.request_shutdown();
  caller.wait();
  orders.request_shutdown();
  orders.wait();
}

// A typo in --upstreams ("ecko" for "echo") used to change nothing and say nothing: the
// operation it meant went to Consul instead, or failed. An entry no client uses at
// start-up is now warned of, and the entries in use are not.
TEST(DeclaredOperationConfig, AnUpstreamsEntryNoClientUsesIsWarnedOfAtStartUp) {
  auto caller_config = in_process("caller");  // at warn
  caller_config.upstreams = coromesh::config::parse_upstreams("echo=127.0.0.1:9,ecko=127.0.0.1:10");
  coromesh::Service caller(caller_config);
  caller.client(echo);
  ::testing::internal::CaptureStderr();
  caller.start();
  coromesh::log::flush();
  const auto log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("event=config.upstream_unused upstream=ecko address=127.0.0.1:10 "
                     "clients=echo"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("upstream=echo"), std::string::npos) << log;
  caller.request_shutdown();
  caller.wait();
}

TEST_F(DeclaredOperation, AnUpstreamsTroubleEscapingATypedRouteIsAnsweredAsServeAnswersIt) {
  // A route<Arg> handler has no QoS chain of its own, but the errors of its own calls
  // are the same upstream trouble a served operation answers 502/503/504: never a 500,
  // which says this service's code failed.
  coromesh::Service plain(in_process("plain-relay"));
  auto& echo_client = plain.client(echo, {.host = "127.0.0.1", .port = echo_service->port()});
  std::uint16_t nobody = 0;
  {
    asio::io_context ioc;
    asio::ip::tcp::acceptor closed(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    nobody = closed.local_endpoint().port();
  }  // closed: connections to it are refused
  auto& gate_client = plain.client(gate, {.host = "127.0.0.1", .port = nobody});
  plain.route<Probe>(coromesh::http::Verb::get, "/api/v1/plain-relay", "plain_relay",
                     [&echo_client](Probe in) -> asio::awaitable<Seen> {
                       co_return co_await echo_client.execute(in);
                     });
  plain.route<Probe>(coromesh::http::Verb::get, "/api/v1/plain-gate", "plain_gate",
                     [&gate_client](Probe in) -> asio::awaitable<Seen> {
                       co_return co_await gate_client.execute(in);
                     });
  plain.start();
  auto get = [&](const std::string& target) {
    return coromesh::testing::http_fetch("127.0.0.1", plain.port(), target);
  };
  ::testing::internal::CaptureStderr();
  auto refused = get("/api/v1/plain-relay?value=1&refuse=1");
  EXPECT_EQ(refused.status, 502) << refused.body;
  EXPECT_EQ(body_of(refused).at("error").as_string(), "refused") << refused.body;
  for (int i = 0; i < 2; ++i) {  // 3 attempts each: the second call opens echo's breaker
    auto failing = get("/api/v1/plain-relay?value=1&fail_first=1000");
    EXPECT_EQ(failing.status, 503) << failing.body;
  }
  auto unreachable = get("/api/v1/plain-gate?value=1");
  EXPECT_EQ(unreachable.status, 502) << unreachable.body;
  EXPECT_EQ(body_of(unreachable).at("error").as_string(), "upstream_unavailable")
      << unreachable.body;
  auto open = get("/api/v1/plain-relay?value=1&fail_first=1000");
  EXPECT_EQ(open.status, 503) << open.body;
  EXPECT_EQ(body_of(open).at("error").as_string(), "circuit_open") << open.body;
  coromesh::log::flush();
  const auto log = ::testing::internal::GetCapturedStderr();
  // One line per operation and status within the second (rate limited), each saying why.
  for (const char* line :
       {"event=service.request_failed operation=plain_relay status=502 fault=caller_error "
        "error=refused",
        "event=service.request_failed operation=plain_relay status=503 fault=callee_failure "
        "error=flaky",
        "event=service.request_failed operation=plain_gate status=502 fault=transport "
        "error=upstream_unavailable"}) {
    EXPECT_NE(log.find(line), std::string::npos) << line << " in\n" << log;
  }
  plain.request_shutdown();
  plain.wait();
}

TEST_F(DeclaredOperation, ADownCalleeIsABadGateway) {
  echo_service->request_shutdown();
  echo_service->wait();
  echo_service.reset();  // closes its listening socket: connections are refused
  ::testing::internal::CaptureStderr();
  auto result = relay_get("value=1");
  coromesh::log::flush();
  const auto log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(result.status, 502) << result.body;
  EXPECT_EQ(body_of(result).at("error").as_string(), "upstream_unavailable");
  // The relay's own log says so: before, the 502 was the only trace of it.
  EXPECT_NE(log.find("level=warn event=service.request_failed operation=relay status=502 "
                     "fault=transport error=upstream_unavailable reason=\"connect to 127.0.0.1:"),
            std::string::npos)
      << log;
  echo_service = std::make_unique<coromesh::Service>(in_process("echo"));  // for TearDown
  echo_service->start();
}

// Its own operation, so that no other test's line shares its log budget.
COROMESH_OPERATION(verdict, GET, "/api/v1/verdict", Probe, Seen, QOS(qos::bulkhead{8}));

// Was: a handler that answered a 5xx by throwing its own HttpError (as the calculator's
// frontend does, to name an operator call's operands) left no line in its service's log
// (the server answers an HttpError silently), unlike the same failure escaping the
// handler as it came (service.dependency_failed). Now either is one warn line, the same
// one; a 4xx, the caller's own error, is none.
TEST(DeclaredOperationFaults, AHandlersOwn5xxIsLoggedOnceAndIts4xxIsNot) {
  std::uint16_t nobody = 0;
  {
    asio::io_context ioc;
    asio::ip::tcp::acceptor closed(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    nobody = closed.local_endpoint().port();
  }  // closed: connections to it are refused
  coromesh::Service teller(in_process("teller"));
  // relay's client has no breaker: each call is tried, and fails alike.
  auto& relay_client = teller.client(relay, {.host = "127.0.0.1", .port = nobody});
  // value 1: a 503 of the handler's own; 2: a 404; 3: its call's failure, answered as
  // the handler's own 502 naming the call (the failure kept as the answer's cause).
  const auto judge = [&relay_client](Probe in) -> asio::awaitable<Seen> {
    using coromesh::http::HttpError;
    using coromesh::http::Status;
    if (in.value == 1) {
      throw HttpError(Status::service_unavailable, "verdict_pending", "no verdict yet");
    }
    if (in.value == 2) {
      throw HttpError(Status::not_found, "no_such_case", "no case 2");
    }
    try {
      co_return co_await relay_client.execute(in);
    } catch (const coromesh::http::ClientError& e) {
      throw HttpError(Status::bad_gateway, "relay_failed",
                      std::string("relay(3) failed: ") + e.what(), std::current_exception());
    }
  };
  teller.serve(verdict, judge);
  teller.route<Probe>(coromesh::http::Verb::get, "/api/v1/plain-verdict", "plain_verdict", judge);
  teller.start();
  ::testing::internal::CaptureStderr();
  for (const std::string path : {"/api/v1/verdict", "/api/v1/plain-verdict"}) {
    auto get = [&](int value) {
      return coromesh::testing::http_fetch("127.0.0.1", teller.port(),
                                           path + "?value=" + std::to_string(value));
    };
    const auto pending = get(1);
    EXPECT_EQ(pending.status, 503) << pending.body;
    EXPECT_EQ(json::parse(pending.body).at("error").as_string(), "verdict_pending");
    EXPECT_EQ(get(2).status, 404);
    const auto failed = get(3);
    EXPECT_EQ(failed.status, 502) << failed.body;
    EXPECT_EQ(json::parse(failed.body).at("error").as_string(), "relay_failed");
  }
  coromesh::log::flush();
  const auto log = ::testing::internal::GetCapturedStderr();
  const auto count = [&log](const std::string& part) {
    std::size_t n = 0;
    for (auto at = log.find(part); at != std::string::npos; at = log.find(part, at + 1)) {
      ++n;
    }
    return n;
  };
  for (const std::string operation : {"verdict", "plain_verdict"}) {
    SCOPED_TRACE(operation);
    const std::string line = "level=warn event=service.request_failed operation=" + operation;
    EXPECT_EQ(count(line + " status=503 fault=callee_failure error=verdict_pending "
                           "reason=\"no verdict yet\" trace_id="),
              1U)
        << log;
    EXPECT_EQ(count(line + " status=502 fault=transport error=relay_failed "
                           "reason=\"relay(3) failed: connect to 127.0.0.1:"),
              1U)
        << log;
    EXPECT_EQ(count(line + " "), 2U) << log;
  }
  EXPECT_EQ(count("no_such_case"), 0U) << "a 4xx was logged:\n" << log;
  teller.request_shutdown();
  teller.wait();
}

struct Measured {
  double total = 0;
};
BOOST_DESCRIBE_STRUCT(Measured, (), (total))
// Behind a breaker that opens after two failures in two calls, logged.
COROMESH_OPERATION(
    measure, GET, "/api/v1/measure", Probe, Measured,
    QOS(qos::circuit_breaker{.failure_rate = 0.5, .window = 2, .minimum_calls = 2, .open_for = 60s},
        qos::log{}));

// Was: a result JSON cannot carry was answered 500 after the chain had counted the call
// `ok` and the breaker a success: the metrics said all was well while every caller got a
// 500. The handler's bad result is its failure (callee_failure), judged by the chain.
TEST(DeclaredOperationFaults, AResultJsonCannotCarryIsTheHandlersFailureInTheChain) {
  coromesh::Service meter(in_process("meter"));
  meter.serve(measure, [](Probe) -> asio::awaitable<Measured> {
    co_return Measured{std::numeric_limits<double>::infinity()};
  });
  meter.start();
  ::testing::internal::CaptureStderr();
  const auto get = [&meter] {
    return coromesh::testing::http_fetch("127.0.0.1", meter.port(), "/api/v1/measure?value=1");
  };
  for (int i = 0; i < 2; ++i) {
    const auto answer = get();
    EXPECT_EQ(answer.status, 500) << answer.body;
    EXPECT_EQ(json::parse(answer.body).at("error").as_string(), "internal") << answer.body;
  }
  // Two failures in two calls: the breaker is open and refuses the third.
  const auto refused = get();
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(json::parse(refused.body).at("error").as_string(), "circuit_open") << refused.body;
  const auto metrics = coromesh::testing::http_fetch("127.0.0.1", meter.port(), "/metrics");
  for (const char* series :
       {R"(coromesh_qos_calls_total{operation="measure",result="error",side="server"} 2)",
        R"(coromesh_qos_calls_total{operation="measure",result="ok",side="server"} 0)",
        R"(coromesh_qos_calls_total{operation="measure",result="rejected",side="server"} 1)"}) {
    EXPECT_NE(metrics.body.find(series), std::string::npos) << series << "\n"
                                                            << metrics.body.substr(0, 4000);
  }
  coromesh::log::flush();
  const auto log = ::testing::internal::GetCapturedStderr();
  const std::string failed =
      "level=warn event=qos.call operation=measure outcome=error "
      "fault=callee_failure attempts=1 ";
  std::size_t lines = 0;
  for (auto at = log.find(failed); at != std::string::npos; at = log.find(failed, at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 2U) << log;
  EXPECT_NE(log.find("JSON cannot carry the non-finite number inf at 'total'"), std::string::npos)
      << log;
  meter.request_shutdown();
  meter.wait();
}

Measured not_a_number(const coromesh::qos::Fault&) {
  return Measured{std::numeric_limits<double>::quiet_NaN()};
}
// A handler that always fails, behind a fallback whose value JSON cannot carry.
COROMESH_OPERATION(estimate, GET, "/api/v1/estimate", Probe, Measured,
                   QOS(qos::log{}, qos::fallback{&not_a_number}));

// Was: the fallback's value was serialized outside the chain, after the log had said
// outcome=fallback: the client got a 500 that the log called a fallback answer. A value
// the answer cannot carry is the fallback's failure, judged in the chain like the
// handler's own (AResultJsonCannotCarryIsTheHandlersFailureInTheChain): callee_failure,
// logged as an error naming the fallback, answered 500.
TEST(DeclaredOperationFaults, AFallbackValueJsonCannotCarryIsAFailureInTheChain) {
  coromesh::Service estimator(in_process("estimator"));
  estimator.serve(estimate, [](Probe) -> asio::awaitable<Measured> {
    throw std::runtime_error("no estimate today");
    co_return Measured{};
  });
  estimator.start();
  ::testing::internal::CaptureStderr();
  const auto answer =
      coromesh::testing::http_fetch("127.0.0.1", estimator.port(), "/api/v1/estimate?value=1");
  EXPECT_EQ(answer.status, 500) << answer.body;
  EXPECT_EQ(json::parse(answer.body).at("error").as_string(), "internal") << answer.body;
  const auto metrics = coromesh::testing::http_fetch("127.0.0.1", estimator.port(), "/metrics");
  for (const char* series :
       {R"(coromesh_qos_calls_total{operation="estimate",result="error",side="server"} 1)",
        R"(coromesh_qos_calls_total{operation="estimate",result="ok",side="server"} 0)"}) {
    EXPECT_NE(metrics.body.find(series), std::string::npos) << series << "\n"
                                                            << metrics.body.substr(0, 4000);
  }
  coromesh::log::flush();
  const auto log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(log.find("outcome=fallback"), std::string::npos)
      << "a 500 logged as a fallback answer:\n"
      << log;
  EXPECT_NE(log.find("level=warn event=qos.call operation=estimate outcome=error "
                     "fault=callee_failure attempts=1 "),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("the fallback's value: JSON cannot carry the non-finite number nan at "
                     "'total'"),
            std::string::npos)
      << log;
  estimator.request_shutdown();
  estimator.wait();
}

}  // namespace
