#include "coromesh/consul/watch.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include "consul_test_fixture.hpp"
#include "coromesh/log/logger.hpp"

namespace coromesh::consul {
namespace {

using namespace std::chrono_literals;
using WatchIntegration = ConsulIntegration;

// Runs a watch in the background until stop() — the way a service's shutdown ends it —
// and reports whether it then ended promptly and cleanly.
class BackgroundWatch {
 public:
  BackgroundWatch(asio::io_context& ioc, asio::awaitable<void> watch) {
    asio::co_spawn(ioc, std::move(watch),
                   asio::bind_cancellation_slot(stop_.slot(), [this](std::exception_ptr e) {
                     finished_ = true;
                     error_ = e;
                   }));
  }
  asio::awaitable<bool> stop() {
    stop_.emit(asio::cancellation_type::terminal);
    co_return co_await eventually([this] { return finished_; }, 1s) && !error_;
  }

 private:
  asio::cancellation_signal stop_;
  bool finished_ = false;
  std::exception_ptr error_;
};

// Each callback's instance IDs, consecutive repeats folded (an index may move for
// reasons that leave the answer the same).
class Snapshots {
 public:
  void add(const std::vector<ServiceInstance>& instances) {
    std::vector<std::string> ids;
    for (const auto& instance : instances) {
      ids.push_back(instance.id);
    }
    ++calls;
    if (seen.empty() || seen.back() != ids) {
      seen.push_back(std::move(ids));
    }
  }
  bool last_is(const std::vector<std::string>& ids) const {
    return !seen.empty() && seen.back() == ids;
  }
  std::vector<std::vector<std::string>> seen;
  int calls = 0;
};

TEST_F(WatchIntegration, SeesAnInstanceAppearAndDisappear) {
  Snapshots snapshots;
  run([&]() -> asio::awaitable<void> {
    BackgroundWatch watch(ioc_, watch_health_service(agent_, "it-watched", false,
                                                     [&](const std::vector<ServiceInstance>& now) {
                                                       snapshots.add(now);
                                                     }));
    EXPECT_TRUE(co_await eventually([&] { return snapshots.calls > 0; }, 5s));

    ServiceRegistration watched{.id = "it-watched-1", .name = "it-watched", .port = 7001};
    co_await agent_.register_service(watched);
    EXPECT_TRUE(co_await eventually([&] { return snapshots.last_is({"it-watched-1"}); }, 5s));
    co_await agent_.deregister_service("it-watched-1");
    EXPECT_TRUE(co_await eventually([&] { return snapshots.last_is({}); }, 5s));
    EXPECT_TRUE(co_await watch.stop());
  }());
  using Ids = std::vector<std::string>;
  EXPECT_EQ(snapshots.seen, (std::vector<Ids>{{}, {"it-watched-1"}, {}}));
}

TEST_F(WatchIntegration, KvWatchSeesAKeyAppearAndChange) {
  std::vector<std::optional<std::string>> values;
  run([&]() -> asio::awaitable<void> {
    BackgroundWatch watch(ioc_, watch_kv(agent_, "it/qos/add", [&](const auto& entry) {
                            values.push_back(entry ? std::optional(entry->value) : std::nullopt);
                          }));
    EXPECT_TRUE(co_await eventually([&] { return !values.empty(); }, 5s));
    co_await agent_.kv_put("it/qos/add", "timeout=100ms");
    EXPECT_TRUE(co_await eventually([&] { return values.size() >= 2; }, 5s));
    co_await agent_.kv_put("it/qos/other", "unrelated");  // another key: no callback
    co_await agent_.kv_put("it/qos/add", "timeout=200ms");
    EXPECT_TRUE(co_await eventually([&] { return values.size() >= 3; }, 5s));
    EXPECT_TRUE(co_await watch.stop());
  }());
  EXPECT_EQ(values, (std::vector<std::optional<std::string>>{std::nullopt, "timeout=100ms",
                                                             "timeout=200ms"}));
}

TEST_F(WatchIntegration, SurvivesAnAgentRestart) {
  Snapshots snapshots;
  ::testing::internal::CaptureStderr();
  run([&]() -> asio::awaitable<void> {
    BackgroundWatch watch(
        ioc_,
        watch_health_service(agent_, "it-restart", false,
                             [&](const std::vector<ServiceInstance>& now) { snapshots.add(now); },
                             {.backoff_initial = 50ms, .backoff_max = 500ms}));
    ServiceRegistration before{.id = "it-restart-1", .name = "it-restart", .port = 7002};
    co_await agent_.register_service(before);
    EXPECT_TRUE(co_await eventually([&] { return snapshots.last_is({"it-restart-1"}); }, 5s));

    // The new agent knows nothing. (Whether the watch sees the empty list in between
    // depends on the new agent's index, which may happen to equal the old one.)
    co_await off_loop([&] { consul_.restart(); });
    ServiceRegistration after{.id = "it-restart-2", .name = "it-restart", .port = 7003};
    co_await agent_.register_service(after);
    EXPECT_TRUE(co_await eventually([&] { return snapshots.last_is({"it-restart-2"}); }, 5s));
    // That answer may have come from the non-blocking query that follows a failure; the
    // failure streak ends (consul.watch.recovered) with an answered blocking query, which
    // the next change brings.
    ServiceRegistration third{.id = "it-restart-3", .name = "it-restart", .port = 7004};
    co_await agent_.register_service(third);
    EXPECT_TRUE(co_await eventually(
        [&] {
          return snapshots.last_is({"it-restart-2", "it-restart-3"});
        },
        5s));
    EXPECT_TRUE(co_await watch.stop());
  }());
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  auto log = ::testing::internal::GetCapturedStderr();
  if (HasFailure()) {
    std::cout << "--- log ---\n" << log;
  }
  auto count = [&](std::string_view event) {
    std::size_t n = 0;
    for (auto at = log.find(event); at != std::string::npos; at = log.find(event, at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_GE(count("event=consul.watch.error"), 1u) << log;
  EXPECT_EQ(count("event=consul.watch.error"), count("event=consul.watch.recovered")) << log;
}

// An agent at its per-client connection limit answers every new connection with 429 and
// keeps serving the ones it has: the watch's first query (not blocking, on the pooled
// connection of ordinary calls) succeeds, each blocking query (which needs a connection
// of its own) fails at once. That is one failure streak, not a recovery each time: the
// backoff must grow, and the streak be logged once.
class ConnectionLimitedWatch : public ConsulIntegration {
 protected:
  ConnectionLimitedWatch()
      : ConsulIntegration({.extra_config = "limits { http_max_conns_per_client = 1 }"}) {}
};

TEST_F(ConnectionLimitedWatch, BlockingQueriesTheAgentRefusesBackOffAsOneStreak) {
  std::size_t answers = 0;
  std::uint64_t refused = 0;
  ::testing::internal::CaptureStderr();
  run([&]() -> asio::awaitable<void> {
    BackgroundWatch watch(ioc_, watch_kv(agent_, "it/limited", [&](const auto&) { ++answers; }));
    EXPECT_TRUE(co_await eventually([&] { return answers > 0; }, 5s));
    co_await sleep_for(2s);  // the watch's traffic meanwhile (not an assertion)
    refused = agent_.request_counts()[static_cast<std::size_t>(RequestOutcome::throttled)];
    EXPECT_TRUE(co_await watch.stop());
  }());
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  auto log = ::testing::internal::GetCapturedStderr();
  std::size_t errors = 0;
  for (auto at = log.find("event=consul.watch.error"); at != std::string::npos;
       at = log.find("event=consul.watch.error", at + 1)) {
    ++errors;
  }
  std::cout << "[ consul ] " << refused << " blocking queries refused with 429 in 2s, " << errors
            << " consul.watch.error lines\n";
  // Backoff from 100 ms, each delay at least half the doubling one: at most 6 in 2 s.
  EXPECT_LE(refused, 10u) << "the watch retried without backing off";
  EXPECT_EQ(errors, 1u) << log;
}

}  // namespace
}  // namespace coromesh::consul
