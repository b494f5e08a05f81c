#include "coromesh/connect/endpoint_watch.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>
#include <stdexcept>
#include <thread>
#include <variant>

#include "async_test.hpp"

namespace coromesh::connect {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;
using consul::HealthStatus;
using consul::QueryOptions;
using consul::QueryResult;
using consul::ServiceInstance;
using coromesh::testing::eventually;
using coromesh::testing::run_async;
using coromesh::testing::sleep_for;

// An AgentClient whose health_connect plays a script: each step is an answer (a list of
// instances) or an error; past the end it blocks like a blocking query with nothing new.
// Every other call is a test bug.
class ScriptedConnectAgent final : public consul::AgentClient {
 public:
  using Step = std::variant<std::vector<ServiceInstance>, std::string>;
  explicit ScriptedConnectAgent(std::vector<Step> script) : script_(std::move(script)) {}

  Task<QueryResult<std::vector<ServiceInstance>>> health_connect(std::string name, bool passing,
                                                                 QueryOptions) override {
    EXPECT_EQ(name, "b");
    EXPECT_TRUE(passing);
    auto step = queries++;
    if (step >= script_.size()) {
      co_await sleep_for(1h);
      throw std::runtime_error("blocked query cancelled");
    }
    if (const auto* error = std::get_if<std::string>(&script_[step])) {
      throw std::runtime_error(*error);
    }
    co_return QueryResult<std::vector<ServiceInstance>>{
        std::get<std::vector<ServiceInstance>>(script_[step]), step + 10};
  }

  Task<void> register_service(consul::ServiceRegistration) override { throw unexpected(); }
  Task<void> deregister_service(std::string) override { throw unexpected(); }
  Task<void> set_maintenance(std::string, bool, std::string) override { throw unexpected(); }
  Task<void> update_ttl(std::string, HealthStatus, std::string) override { throw unexpected(); }
  Task<std::optional<consul::AgentService>> agent_service(std::string) override {
    throw unexpected();
  }
  Task<QueryResult<std::vector<ServiceInstance>>> health_service(std::string, bool,
                                                                 QueryOptions) override {
    throw unexpected();
  }
  Task<QueryResult<std::optional<consul::KvEntry>>> kv_get(std::string, QueryOptions) override {
    throw unexpected();
  }
  Task<QueryResult<std::vector<consul::KvEntry>>> kv_list(std::string, QueryOptions) override {
    throw unexpected();
  }
  Task<bool> kv_put(std::string, std::string) override { throw unexpected(); }
  Task<QueryResult<consul::CaRoots>> connect_ca_roots(QueryOptions) override { throw unexpected(); }
  Task<QueryResult<consul::LeafCertificate>> connect_ca_leaf(std::string, QueryOptions) override {
    throw unexpected();
  }
  Task<consul::AuthorizeResult> connect_authorize(std::string, std::string, std::string,
                                                  std::chrono::milliseconds) override {
    throw unexpected();
  }

  std::size_t queries = 0;

 private:
  static std::logic_error unexpected() { return std::logic_error("not scripted"); }
  std::vector<Step> script_;
};

ServiceInstance proxy(std::string id, std::uint16_t port,
                      HealthStatus status = HealthStatus::passing) {
  return {.node = "n1",
          .id = std::move(id),
          .name = "b-sidecar-proxy",
          .address = "127.0.0.1",
          .port = port,
          .kind = "connect-proxy",
          .status = status};
}

const consul::WatchOptions kQuickRetries{.backoff_initial = 1ms, .backoff_max = 2ms};

// Runs the watch on `ioc` until stop().
class Running {
 public:
  Running(asio::io_context& ioc, EndpointWatch& watch) {
    asio::co_spawn(ioc, watch.run(), asio::bind_cancellation_slot(stop_.slot(), [this](auto e) {
                     finished = true;
                     error = e;
                   }));
  }
  void stop() { stop_.emit(asio::cancellation_type::terminal); }
  bool finished = false;
  std::exception_ptr error;

 private:
  asio::cancellation_signal stop_;
};

TEST(EndpointWatch, ReadyWaitsForTheFirstAnswer) {
  asio::io_context ioc;
  ScriptedConnectAgent agent({std::vector{proxy("p2", 21001), proxy("p1", 21000),
                                          proxy("p3", 21002, HealthStatus::critical)}});
  EndpointWatch watch(agent, "b", kQuickRetries);
  EXPECT_EQ(watch.snapshot(), nullptr);
  run_async(ioc, [&]() -> asio::awaitable<void> {
    // ready() is waiting before the watch even starts.
    bool got = false;
    asio::co_spawn(ioc, watch.ready(), [&](std::exception_ptr e, EndpointWatch::Snapshot set) {
      EXPECT_FALSE(e);
      got = set != nullptr;
    });
    co_await sleep_for(5ms);
    EXPECT_FALSE(got);
    Running running(ioc, watch);
    EXPECT_TRUE(co_await eventually([&] { return got; }, 2s));

    auto set = co_await watch.ready();  // answered at once now
    EXPECT_EQ(set, watch.snapshot());
    EXPECT_EQ(set->service, "b");
    EXPECT_EQ(set->size(), 2u);  // sorted, the critical one left out
    if (set->size() != 2) {
      co_return;
    }
    EXPECT_EQ(set->endpoints[0].key, "n1/p1");
    EXPECT_EQ(set->endpoints[0].port, 21000);
    EXPECT_EQ(set->endpoints[1].instance_id, "p2");
    // The name the peer's certificate must carry is the destination's, not the proxy's.
    EXPECT_EQ(set->endpoints[1].service, "b");
    running.stop();
    EXPECT_TRUE(co_await eventually([&] { return running.finished; }, 1s));
    EXPECT_FALSE(running.error);
  }());
}

TEST(EndpointWatch, WatchErrorsKeepTheLastSnapshot) {
  asio::io_context ioc;
  ScriptedConnectAgent agent({std::vector{proxy("p1", 21000)}, std::string("connection refused"),
                              std::string("connection refused"), std::string("timeout")});
  EndpointWatch watch(agent, "b", kQuickRetries);
  run_async(ioc, [&]() -> asio::awaitable<void> {
    Running running(ioc, watch);
    auto first = co_await watch.ready();
    EXPECT_TRUE(co_await eventually([&] { return agent.queries > 4; }, 2s));
    EXPECT_EQ(watch.snapshot(), first);  // the very same snapshot, still one endpoint
    EXPECT_EQ(first->size(), 1u);
    running.stop();
    co_await eventually([&] { return running.finished; }, 1s);
  }());
}

TEST(EndpointWatch, NoEndpointIsAnAnswerToo) {
  asio::io_context ioc;
  ScriptedConnectAgent agent({std::vector<ServiceInstance>{}});
  EndpointWatch watch(agent, "b", kQuickRetries);
  run_async(ioc, [&]() -> asio::awaitable<void> {
    Running running(ioc, watch);
    auto first = co_await watch.ready();
    EXPECT_TRUE(first->empty());
    running.stop();
    co_await eventually([&] { return running.finished; }, 1s);
  }());
}

TEST(EndpointWatch, OnlyAChangeOfEndpointsIsANewSnapshot) {
  asio::io_context ioc;
  // Three answers at three indexes; the second has the same endpoints as the first (an
  // index moves for changes an EndpointSet does not keep, such as a check's output).
  ScriptedConnectAgent agent({std::vector{proxy("p1", 21000)}, std::vector{proxy("p1", 21000)},
                              std::vector{proxy("p1", 21000), proxy("p2", 21001)}});
  EndpointWatch watch(agent, "b", kQuickRetries);
  run_async(ioc, [&]() -> asio::awaitable<void> {
    Running running(ioc, watch);
    EXPECT_TRUE(
        co_await eventually([&] { return watch.snapshot() && watch.snapshot()->size() == 2; }, 2s));
    EXPECT_EQ(watch.snapshot()->generation, 2u);
    running.stop();
    co_await eventually([&] { return running.finished; }, 1s);
  }());
}

TEST(EndpointWatch, AWaitingReadyCanBeCancelled) {
  asio::io_context ioc;
  ScriptedConnectAgent agent({});  // never answers
  EndpointWatch watch(agent, "b", kQuickRetries);
  run_async(ioc, [&]() -> asio::awaitable<void> {
    Running running(ioc, watch);
    asio::steady_timer deadline(ioc, 20ms);
    auto winner = co_await (watch.ready() || deadline.async_wait(asio::use_awaitable));
    EXPECT_EQ(winner.index(), 1u);

    asio::cancellation_signal cancel;
    std::exception_ptr error;
    bool finished = false;
    asio::co_spawn(ioc, watch.ready(),
                   asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, auto) {
                     error = e;
                     finished = true;
                   }));
    co_await sleep_for(5ms);
    cancel.emit(asio::cancellation_type::terminal);
    EXPECT_TRUE(co_await eventually([&] { return finished; }, 1s));
    EXPECT_TRUE(error);
    running.stop();
    co_await eventually([&] { return running.finished; }, 1s);
  }());
}

TEST(EndpointWatch, StoppingTheWatchFailsReadyInsteadOfHangingIt) {
  asio::io_context ioc;
  ScriptedConnectAgent agent({});
  EndpointWatch watch(agent, "b", kQuickRetries);
  run_async(ioc, [&]() -> asio::awaitable<void> {
    Running running(ioc, watch);
    std::exception_ptr error;
    bool finished = false;
    asio::co_spawn(ioc, watch.ready(), [&](std::exception_ptr e, auto) {
      error = e;
      finished = true;
    });
    co_await sleep_for(5ms);
    running.stop();
    EXPECT_TRUE(co_await eventually([&] { return finished && running.finished; }, 1s));
    EXPECT_TRUE(error);
    try {
      if (error) {
        std::rethrow_exception(error);
      }
    } catch (const boost::system::system_error& e) {
      EXPECT_EQ(e.code(), asio::error::operation_aborted);
    }
    // And a ready() after the end fails at once.
    bool late_failed = false;
    try {
      co_await watch.ready();
    } catch (const boost::system::system_error&) {
      late_failed = true;
    }
    EXPECT_TRUE(late_failed);
  }());
}

// ready_until() as ready(): a watch that has ended (shutdown) fails it at once, it does not
// hold the caller until the deadline and then pass for "Consul did not answer in time".
TEST(EndpointWatch, StoppingTheWatchFailsReadyUntilAtOnceNotAtItsDeadline) {
  asio::io_context ioc;
  ScriptedConnectAgent agent({});
  EndpointWatch watch(agent, "b", kQuickRetries);
  const auto far = std::chrono::steady_clock::now() + 1h;
  run_async(ioc, [&]() -> asio::awaitable<void> {
    Running running(ioc, watch);
    std::exception_ptr waiting_error;
    bool waiting_finished = false;
    asio::co_spawn(ioc, watch.ready_until(far), [&](std::exception_ptr e, auto) {
      waiting_error = e;
      waiting_finished = true;
    });
    co_await sleep_for(5ms);
    running.stop();
    EXPECT_TRUE(co_await eventually([&] { return waiting_finished && running.finished; }, 5s))
        << "ready_until() kept waiting for its deadline after the watch ended";
    coromesh::testing::expect_operation_aborted(waiting_error);

    // And one called after the end fails at once too.
    std::exception_ptr late_error;
    bool late_finished = false;
    asio::co_spawn(ioc, watch.ready_until(far), [&](std::exception_ptr e, auto) {
      late_error = e;
      late_finished = true;
    });
    EXPECT_TRUE(co_await eventually([&] { return late_finished; }, 5s));
    coromesh::testing::expect_operation_aborted(late_error);
  }());
}

TEST(EndpointWatch, ReadyResumesOnTheWaitersOwnThread) {
  asio::io_context watch_ioc;
  asio::io_context caller_ioc;
  ScriptedConnectAgent agent({std::vector{proxy("p1", 21000)}});
  EndpointWatch watch(agent, "b", kQuickRetries);

  std::thread::id resumed_on;
  EndpointWatch::Snapshot seen;
  asio::co_spawn(
      caller_ioc,
      [&]() -> asio::awaitable<void> {
        seen = co_await watch.ready();
        resumed_on = std::this_thread::get_id();
      },
      asio::detached);
  auto guard = asio::make_work_guard(caller_ioc);
  std::thread caller([&] { caller_ioc.run_for(5s); });
  const auto caller_id = caller.get_id();

  run_async(watch_ioc, [&]() -> asio::awaitable<void> {
    Running running(watch_ioc, watch);
    co_await watch.ready();
    running.stop();
    co_await eventually([&] { return running.finished; }, 1s);
  }());
  guard.reset();
  caller.join();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->size(), 1u);
  EXPECT_EQ(resumed_on, caller_id);
}

}  // namespace
}  // namespace coromesh::connect
