// OperationClient against a loopback callee that answers with raw bytes (the http::Client
// tests' server): what the caller's chain is handed for the callee's error answers.

#include "coromesh/service/operation_client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/describe.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>

#include "../http/client_fixture.hpp"
#include "coromesh/consul/agent_client.hpp"
#include "coromesh/metrics/registry.hpp"
#include "coromesh/service/discovered_upstream.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/operation.hpp"
#include "coromesh/service/qos_metrics.hpp"
#include "coromesh/service/remote_error.hpp"

namespace coromesh {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using http::client_testing::use_tuple;

struct Question {
  std::int64_t n = 0;
};
BOOST_DESCRIBE_STRUCT(Question, (), (n))

COROMESH_OPERATION(ask, GET, "/ask", Question, std::int64_t);
// The same behind a preemptive timeout: the call runs as a child coroutine the deadline
// watchdog may cancel.
COROMESH_OPERATION(ask_in_time, GET, "/ask", Question, std::int64_t,
                   CLIENT_QOS(qos::timeout{std::chrono::seconds(30)}));

// Answers every request on a connection with `raw`.
http::client_testing::TestServer::Session answer_every_request_with(std::string raw) {
  return [raw](beast::tcp_stream& stream, int) -> asio::awaitable<void> {
    beast::flat_buffer buffer;
    while (co_await http::client_testing::read_request(stream, buffer)) {
      co_await asio::async_write(stream, asio::buffer(raw), use_tuple);
    }
  };
}

std::string error_answer(unsigned status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// The RemoteError the call ends with; fails the test if it ends otherwise.
RemoteError remote_error_of(const std::string& answer) {
  asio::io_context io;
  http::client_testing::TestServer callee(io, answer_every_request_with(answer));
  OperationClient client(ask, io.get_executor(), {.upstream = callee.destination()});
  std::exception_ptr outcome;
  bool done = false;
  asio::co_spawn(io, client.execute(Question{.n = 1}), [&](std::exception_ptr e, std::int64_t) {
    outcome = e;
    done = true;
    io.stop();  // the callee serves on until the io_context goes
  });
  io.run_for(std::chrono::seconds(10));
  if (!done || !outcome) {
    ADD_FAILURE() << (done ? "the call succeeded" : "the call did not end within 10s");
    return RemoteError(0, "", "");
  }
  try {
    std::rethrow_exception(outcome);
  } catch (const RemoteError& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a RemoteError: " << e.what();
  }
  return RemoteError(0, "", "");
}

TEST(OperationClientErrors, CarryTheCalleesStatusCodeAndReason) {
  const auto error =
      remote_error_of(error_answer(503, R"({"error": "overloaded", "reason": "try later"})"));
  EXPECT_EQ(error.status(), 503u);
  EXPECT_EQ(error.code(), "overloaded");
  EXPECT_EQ(error.reason(), "try later");
}

// A callee's error code and reason end in this service's logs and, for an upstream error
// a handler lets escape, in its own answer to its caller, hop after hop. Only a reason
// that was not JSON was clipped: a JSON one of megabytes made an exception message,
// log lines and answers of megabytes.
TEST(OperationClientErrors, AreClippedHoweverLongTheCalleeMadeThem) {
  const std::string huge(1024 * 1024, 'x');
  const auto error = remote_error_of(
      error_answer(500, R"({"error": ")" + huge + R"(", "reason": ")" + huge + R"("})"));
  EXPECT_EQ(error.status(), 500u);
  EXPECT_LE(error.code().size(), 100u);
  EXPECT_LE(error.reason().size(), 300u);
  EXPECT_LE(std::string(error.what()).size(), 500u);
}

// Clipped on a character boundary: the clip goes on in JSON answers.
TEST(OperationClientErrors, AreClippedBetweenCharacters) {
  std::string long_reason;
  while (long_reason.size() < 1000) {
    long_reason += "\u00e9";  // é, two bytes in UTF-8: an even byte count ends each one
  }
  const auto error = remote_error_of(error_answer(503, R"({"reason": "x)" + long_reason + R"("})"));
  ASSERT_FALSE(error.reason().empty());
  EXPECT_NE(static_cast<unsigned char>(error.reason().back()), 0xC3u)
      << "the clip ends with the first byte of a character";
}

// A service's shutdown destroys the io_context's pending work while its clients still
// exist: a call waiting for its answer, inside a preemptive timeout, unwinds then (its
// connection, its deadline timer, the watchdog's registration, the child coroutine and
// its waiter), touching nothing already gone. ASan's to judge; here, that it never
// completes.
TEST(OperationClientLifetime, AShutdownWithACallInFlightUnwindsIt) {
  struct StoppableIo : asio::io_context {
    using asio::io_context::shutdown;
  };
  StoppableIo io;
  bool asked = false;
  http::client_testing::TestServer callee(
      io, [&asked](beast::tcp_stream& stream, int) -> asio::awaitable<void> {
        beast::flat_buffer buffer;
        co_await http::client_testing::read_request(stream, buffer);
        asked = true;
        co_await http::client_testing::wait_for_close(stream);
      });
  OperationClient client(ask_in_time, io.get_executor(), {.upstream = callee.destination()});
  bool completed = false;
  asio::co_spawn(io, client.execute(Question{.n = 1}),
                 [&](std::exception_ptr, std::int64_t) { completed = true; });
  for (int i = 0; i < 1000 && !asked; ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(asked) << "the callee never got the request";
  io.shutdown();
  EXPECT_FALSE(completed);
}

// Was: a call whose caller's deadline was already spent was refused by the client stub
// before sending, but told to no rejection hook: counted as a rejected call with no
// coromesh_qos_rejections_total line saying which policy refused it and why.
TEST(OperationClientRefusals, ASpentDeadlineIsCountedLikeEveryOtherRefusal) {
  asio::io_context io;
  metrics::MetricsRegistry registry;
  QosMetrics qos_metrics(registry);
  http::client_testing::TestServer callee(io, answer_every_request_with(error_answer(200, "1")));
  OperationClient client(ask, io.get_executor(),
                         {.upstream = callee.destination(), .metrics = &qos_metrics});
  std::exception_ptr outcome;
  const Question question{.n = 1};
  asio::co_spawn(
      io,
      client.execute(question,
                     CallContext{.deadline = qos::Deadline::after(std::chrono::milliseconds(0))}),
      [&](std::exception_ptr e, std::int64_t) {
        outcome = e;
        io.stop();
      });
  io.run_for(std::chrono::seconds(10));
  ASSERT_TRUE(outcome) << "the call with a spent deadline was sent";
  EXPECT_THROW(std::rethrow_exception(outcome), qos::QosRejected);
  const std::string text = registry.render();
  EXPECT_NE(text.find(R"(coromesh_qos_rejections_total{operation="ask",policy="deadline",)"
                      R"(reason="deadline_exceeded",side="client"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find(R"(coromesh_qos_calls_total{operation="ask",result="rejected",side="client"} 1)"),
      std::string::npos);
}

// A callee reached over mTLS by a caller whose own certificate has not arrived (a
// Connect-native service's leaf before Consul issued it).
struct CalleeWithoutOwnCertificate {
  explicit CalleeWithoutOwnCertificate(asio::io_context& io)
      : callee(io, answer_every_request_with(error_answer(200, "1"))) {}

  OperationClientOptions options(std::chrono::milliseconds timeout) const {
    auto upstream = callee.destination();
    upstream.tls = std::make_shared<const http::ClientTls>(
        http::ClientTls{.context = [] { return std::shared_ptr<http::TlsContext>(); }});
    return {.upstream = upstream, .default_timeout = timeout};
  }

  http::client_testing::TestServer callee;
};

// How a call ended: its exception (null: it succeeded) once `done`.
struct CallEnd {
  bool done = false;
  std::exception_ptr error;
};

// A caller without a certificate of its own waits for it, and when the attempt's time
// runs out first, says so without having picked or dialled anyone: a refusal of its own,
// not the callee's (transport) fault. It used to dial and fail the handshake
// (tls_handshake: a transport fault held against the callee).
TEST(OperationClientOwnCertificate, MissingUntilTheDeadlineIsTheCallersOwnRefusalNothingSent) {
  asio::io_context io;
  CalleeWithoutOwnCertificate setup(io);
  OperationClient client(ask, io.get_executor(), setup.options(std::chrono::milliseconds(400)));
  CallEnd end;
  asio::co_spawn(io, client.execute(Question{.n = 1}), [&](std::exception_ptr e, std::int64_t) {
    end = {true, e};
    io.stop();
  });
  io.run_for(std::chrono::seconds(10));
  ASSERT_TRUE(end.done) << "the call did not end within 10s";
  ASSERT_TRUE(end.error) << "the call succeeded";
  try {
    std::rethrow_exception(end.error);
  } catch (const http::ClientError& e) {
    EXPECT_EQ(e.code(), http::ClientErrc::identity_unavailable) << e.what();
    EXPECT_NE(std::string(e.what()).find("no TLS certificate of its own"), std::string::npos)
        << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ClientError: " << e.what();
  }
  EXPECT_EQ(classify_service_fault(end.error).kind, qos::FaultClass::rejected);
  EXPECT_EQ(setup.callee.connections(), 0) << "the callee was dialled without a certificate";
}

// Cancelled while waiting for its own certificate, a call ends as a cancellation.
TEST(OperationClientOwnCertificate, ACancellationDuringTheWaitIsACancellation) {
  asio::io_context io;
  CalleeWithoutOwnCertificate setup(io);
  OperationClient client(ask, io.get_executor(), setup.options(std::chrono::seconds(30)));
  asio::cancellation_signal cancel;
  CallEnd end;
  asio::co_spawn(
      io, client.execute(Question{.n = 1}),
      asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, std::int64_t) {
        end = {true, e};
      }));
  io.run_for(std::chrono::milliseconds(200));
  ASSERT_FALSE(end.done) << "the call did not wait for its certificate";
  cancel.emit(asio::cancellation_type::terminal);
  for (int i = 0; i < 500 && !end.done; ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(end.done) << "the cancelled call did not end within 5s";
  ASSERT_TRUE(end.error) << "the call succeeded";
  EXPECT_EQ(classify_service_fault(end.error).kind, qos::FaultClass::cancelled);
  EXPECT_EQ(setup.callee.connections(), 0);
}

// A callee that answers the first request of a connection and holds the second one
// unanswered until the caller closes; `held` once the second has come, `closed` once the
// caller has closed the connection.
struct AnswersOnceThenHolds {
  explicit AnswersOnceThenHolds(asio::io_context& io)
      : callee(io, [this](beast::tcp_stream& stream, int) -> asio::awaitable<void> {
          beast::flat_buffer buffer;
          if (!co_await http::client_testing::read_request(stream, buffer)) {
            co_return;
          }
          const std::string answer = error_answer(200, "1");
          co_await asio::async_write(stream, asio::buffer(answer), use_tuple);
          if (co_await http::client_testing::read_request(stream, buffer)) {
            held = true;
            co_await http::client_testing::wait_for_close(stream);
          }
          closed = true;
        }) {}

  http::client_testing::TestServer callee;
  bool held = false;
  bool closed = false;
};

// Was: a typed call made by a coroutine that takes its cancellation as error codes (the
// HTTP server's connections, where every handler runs: throw_if_cancelled(false)) saw
// only a cancellation that reached a step while that step waited. One that landed while
// a step's completion was already queued (here the request's write, which completes at
// once; in the field a hang-up seen in the same turn of the io thread as the connect or
// the write) was recorded and lost: the next step (the read) started as if nothing had
// happened, and the call held its connection until its deadline (a minute in the caller
// hang-up test, seen 1 run in 5). The cancellation is posted before the call starts and
// runs right after the write has been handed to the socket, deterministically so: the
// write's completion is queued behind it.
TEST(OperationClientCancellation, ACancellationThatLandsBetweenTwoStepsStopsTheCall) {
  asio::io_context io;
  metrics::MetricsRegistry registry;
  QosMetrics qos_metrics(registry);
  AnswersOnceThenHolds setup(io);
  OperationClient client(ask, io.get_executor(),
                         {.upstream = setup.callee.destination(),
                          .metrics = &qos_metrics,
                          .default_timeout = std::chrono::seconds(30)});
  asio::cancellation_signal hang_up;
  CallEnd first, second;
  auto connection = [&]() -> asio::awaitable<void> {
    co_await asio::this_coro::throw_if_cancelled(false);  // as the HTTP server's connections
    const Question question{.n = 1};
    try {
      co_await client.execute(question);  // leaves its connection in the pool
    } catch (...) {
      first.error = std::current_exception();
    }
    first.done = true;
    asio::post(io, [&hang_up] { hang_up.emit(asio::cancellation_type::terminal); });
    try {
      co_await client.execute(question);  // the pooled connection: no wait before the write
    } catch (...) {
      second.error = std::current_exception();
    }
    second.done = true;
  };
  asio::co_spawn(io, connection(),
                 asio::bind_cancellation_slot(hang_up.slot(), [](std::exception_ptr) {}));
  for (int i = 0; i < 1000 && !(second.done && setup.closed); ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  if (!second.done) {
    // Ended here (its read is waiting now), so that it does not outlive `hang_up`.
    hang_up.emit(asio::cancellation_type::terminal);
    for (int i = 0; i < 100 && !second.done; ++i) {
      io.run_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "the cancelled call went on waiting for its answer (10s)";
  }
  ASSERT_TRUE(first.done && !first.error) << "the first call failed";
  ASSERT_TRUE(setup.held) << "the second request never reached the callee";
  ASSERT_TRUE(second.error) << "the cancelled call succeeded";
  EXPECT_EQ(classify_service_fault(second.error).kind, qos::FaultClass::cancelled);
  EXPECT_TRUE(setup.closed) << "the cancelled call's connection was kept open";
  EXPECT_EQ(client.transport().idle_connections_to(io.get_executor(), setup.callee.destination()),
            0u)
      << "the cancelled call's connection went back to the pool";
  const std::string text = registry.render();
  EXPECT_NE(
      text.find(R"(coromesh_qos_calls_total{operation="ask",result="cancelled",side="client"} 1)"),
      std::string::npos)
      << text;
}

// A Consul agent whose first answer about a service's instances (one: `callee`) comes
// only after `delay`, as in a service's first moments; later queries block.
class LateConsul final : public consul::AgentClient {
 public:
  LateConsul(http::Destination callee, std::chrono::milliseconds delay)
      : callee_(std::move(callee)), delay_(delay) {}

  Task<consul::QueryResult<std::vector<consul::ServiceInstance>>> health_service(
      std::string name, bool, consul::QueryOptions) override {
    asio::steady_timer wait(co_await asio::this_coro::executor,
                            answered_ ? std::chrono::hours(1) : delay_);
    co_await wait.async_wait(use_tuple);
    if (answered_) {
      throw std::runtime_error("blocked query ended");
    }
    answered_ = true;
    co_return consul::QueryResult<std::vector<consul::ServiceInstance>>{
        {{.node = "n1",
          .id = name + "-1",
          .name = name,
          .address = callee_.host,
          .port = callee_.port,
          .status = consul::HealthStatus::passing}},
        10};
  }

  Task<void> register_service(consul::ServiceRegistration) override { throw unexpected(); }
  Task<void> deregister_service(std::string) override { throw unexpected(); }
  Task<void> set_maintenance(std::string, bool, std::string) override { throw unexpected(); }
  Task<void> update_ttl(std::string, consul::HealthStatus, std::string) override {
    throw unexpected();
  }
  Task<std::optional<consul::AgentService>> agent_service(std::string) override {
    throw unexpected();
  }
  Task<consul::QueryResult<std::vector<consul::ServiceInstance>>> health_connect(
      std::string, bool, consul::QueryOptions) override {
    throw unexpected();
  }
  Task<consul::QueryResult<std::optional<consul::KvEntry>>> kv_get(std::string,
                                                                   consul::QueryOptions) override {
    throw unexpected();
  }
  Task<consul::QueryResult<std::vector<consul::KvEntry>>> kv_list(std::string,
                                                                  consul::QueryOptions) override {
    throw unexpected();
  }
  Task<bool> kv_put(std::string, std::string) override { throw unexpected(); }
  Task<consul::QueryResult<consul::CaRoots>> connect_ca_roots(consul::QueryOptions) override {
    throw unexpected();
  }
  Task<consul::QueryResult<consul::LeafCertificate>> connect_ca_leaf(
      std::string, consul::QueryOptions) override {
    throw unexpected();
  }
  Task<consul::AuthorizeResult> connect_authorize(std::string, std::string, std::string,
                                                  std::chrono::milliseconds) override {
    throw unexpected();
  }

 private:
  static std::logic_error unexpected() { return std::logic_error("not scripted"); }
  http::Destination callee_;
  std::chrono::milliseconds delay_;
  bool answered_ = false;
};

// Was: the attempt's remaining deadline went into `x-coromesh-deadline-ms` before the
// call waited for Consul's first answer (up to half of it), so the callee was handed
// time the caller had already spent: it went on working after the caller had given up.
// The header says what is left when the request goes out (qos/deadline.hpp).
TEST(OperationClientDeadline, TheHeaderLeavesOutTheWaitForDiscovery) {
  asio::io_context io;
  std::string header;
  http::client_testing::TestServer callee(
      io, [&header](beast::tcp_stream& stream, int) -> asio::awaitable<void> {
        beast::flat_buffer buffer;
        while (auto request = co_await http::client_testing::read_request(stream, buffer)) {
          header = std::string((*request)[qos::kDeadlineHeader]);
          const std::string answer = error_answer(200, "1");
          co_await asio::async_write(stream, asio::buffer(answer), use_tuple);
        }
      });
  LateConsul consul(callee.destination(), std::chrono::milliseconds(500));
  auto upstream = std::make_shared<DiscoveredUpstream>(
      consul,
      DiscoveredUpstreamOptions{.service = "add-svc", .kind = connect::EndpointKind::plain});
  asio::cancellation_signal stop_watch;
  asio::co_spawn(
      io, upstream->run(),
      asio::bind_cancellation_slot(stop_watch.slot(), [&io](std::exception_ptr) { io.stop(); }));
  OperationClient client(ask, io.get_executor(), {.discovered = upstream});
  const Question question{.n = 1};
  // Made before Consul is first asked: its answer comes 500 ms or more into these 2 s.
  const CallContext parent{.deadline = qos::Deadline::after(std::chrono::milliseconds(2000))};
  CallEnd end;
  asio::co_spawn(io, client.execute(question, parent), [&](std::exception_ptr e, std::int64_t) {
    end = {true, e};
    stop_watch.emit(asio::cancellation_type::terminal);
  });
  io.run_for(std::chrono::seconds(10));
  ASSERT_TRUE(end.done) << "the call did not end within 10s";
  ASSERT_FALSE(end.error) << "the call failed";
  ASSERT_FALSE(header.empty()) << "no deadline header";
  EXPECT_LE(std::stoll(header), 1500) << "the callee was given the time spent waiting for Consul";
}

// Was: default_timeout, which is to bound a call without any deadline, also cut short a
// call whose caller gave it more: the callee, told it had 2 s (the deadline header),
// answered in 500 ms and was charged a timeout at 200 ms (its breaker's failure, its
// outlier ejection, a retry).
TEST(OperationClientDeadline, TheDefaultTimeoutBoundsOnlyACallWithoutADeadline) {
  asio::io_context io;
  http::client_testing::TestServer callee(
      io, [](beast::tcp_stream& stream, int) -> asio::awaitable<void> {
        beast::flat_buffer buffer;
        co_await http::client_testing::read_request(stream, buffer);
        co_await http::client_testing::sleep_for(std::chrono::milliseconds(500));
        const std::string answer = error_answer(200, "7");
        co_await asio::async_write(stream, asio::buffer(answer), use_tuple);
      });
  OperationClient client(
      ask, io.get_executor(),
      {.upstream = callee.destination(), .default_timeout = std::chrono::milliseconds(200)});
  const Question question{.n = 1};
  const CallContext parent{.deadline = qos::Deadline::after(std::chrono::seconds(5))};
  CallEnd end;
  std::int64_t answer = 0;
  asio::co_spawn(io, client.execute(question, parent), [&](std::exception_ptr e, std::int64_t n) {
    end = {true, e};
    answer = n;
    io.stop();
  });
  io.run_for(std::chrono::seconds(10));
  ASSERT_TRUE(end.done) << "the call did not end within 10s";
  if (end.error) {
    try {
      std::rethrow_exception(end.error);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the call failed: " << e.what();
    }
  }
  EXPECT_EQ(answer, 7);
}

}  // namespace
}  // namespace coromesh
