#include "coromesh/consul/watch.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <new>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "async_test.hpp"
#include "coromesh/log/logger.hpp"

namespace coromesh::consul {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using coromesh::testing::eventually;
using coromesh::testing::run_async;
using coromesh::testing::sleep_for;

// Plays a script of answers to the watch, recording each query; past the end of the
// script it blocks like a blocking query with nothing new. An answer is an index (its
// value is the index too), an {index, value} pair, or an error.
class ScriptedQuery {
 public:
  struct Indexed {
    std::uint64_t index;
    int value;
  };
  using Answer = std::variant<std::uint64_t, Indexed, std::string>;
  explicit ScriptedQuery(std::vector<Answer> script) : script_(std::move(script)) {}

  WatchQuery<int> query() {
    return [this](QueryOptions options) -> asio::awaitable<QueryResult<int>> {
      queries.push_back(options);
      auto step = queries.size() - 1;
      if (step >= script_.size()) {
        co_await sleep_for(1h);
        throw std::runtime_error("blocked query cancelled");
      }
      if (const auto* error = std::get_if<std::string>(&script_[step])) {
        throw std::runtime_error(*error);
      }
      if (const auto* indexed = std::get_if<Indexed>(&script_[step])) {
        co_return QueryResult<int>{indexed->value, indexed->index};
      }
      auto index = std::get<std::uint64_t>(script_[step]);
      co_return QueryResult<int>{static_cast<int>(index), index};
    };
  }
  bool exhausted() const { return queries.size() > script_.size(); }

  std::vector<QueryOptions> queries;

 private:
  std::vector<Answer> script_;
};

// Runs a watch over `script` until the script is played out, then cancels it the way a
// service's shutdown would, and returns the values the callback saw.
// `also`, if given, runs after each value is recorded (and may throw); `deliveries`, if
// given, records what the watch said about each value.
std::vector<int> play(ScriptedQuery& script, WatchOptions options = {.wait = 30s},
                      WatchCallback<int> also = {},
                      std::vector<WatchDelivery>* deliveries = nullptr) {
  asio::io_context ioc;
  std::vector<int> seen;
  run_async(ioc, [&]() -> asio::awaitable<void> {
    asio::cancellation_signal stop;
    bool finished = false;
    std::exception_ptr error;
    asio::co_spawn(co_await asio::this_coro::executor,
                   watch<int>(
                       "test", script.query(),
                       [&](const int& value, WatchDelivery delivery) {
                         seen.push_back(value);
                         if (deliveries != nullptr) {
                           deliveries->push_back(delivery);
                         }
                         if (also) {
                           also(value);
                         }
                       },
                       options),
                   asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr e) {
                     finished = true;
                     error = e;
                   }));
    EXPECT_TRUE(co_await eventually([&] { return script.exhausted(); }, 5s));
    auto cancelled_at = std::chrono::steady_clock::now();
    stop.emit(asio::cancellation_type::terminal);
    EXPECT_TRUE(co_await eventually([&] { return finished; }, 1s));
    EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, 500ms) << "stops promptly";
    EXPECT_FALSE(error) << "a cancelled watch returns normally";
  }());
  return seen;
}

std::vector<std::uint64_t> sent_indexes(const ScriptedQuery& script) {
  std::vector<std::uint64_t> indexes;
  for (const auto& query : script.queries) {
    indexes.push_back(query.index);
  }
  return indexes;
}

TEST(ConsulWatch, CallsBackOnlyWhenTheIndexChanges) {
  ScriptedQuery script({5u, 5u, 7u, 7u, 7u, 9u});
  EXPECT_EQ(play(script), (std::vector<int>{5, 7, 9}));
  EXPECT_EQ(sent_indexes(script), (std::vector<std::uint64_t>{0, 5, 5, 7, 7, 7, 9}));
  EXPECT_EQ(script.queries.back().wait, 30s);
}

TEST(ConsulWatch, ResetsTheIndexWhenItGoesBackwards) {
  ScriptedQuery script({10u, 3u, 3u, 4u});
  EXPECT_EQ(play(script), (std::vector<int>{10, 3, 4}));
  EXPECT_EQ(sent_indexes(script), (std::vector<std::uint64_t>{0, 10, 0, 3, 4}))
      << "after going backwards, one non-blocking query";
}

TEST(ConsulWatch, TreatsAZeroIndexAsOne) {
  ScriptedQuery script({0u, 0u});
  EXPECT_EQ(play(script), (std::vector<int>{0}));
  EXPECT_EQ(sent_indexes(script), (std::vector<std::uint64_t>{0, 1, 1}));
}

std::size_t occurrences(const std::string& log, std::string_view event) {
  std::size_t n = 0;
  for (auto at = log.find(event); at != std::string::npos; at = log.find(event, at + 1)) {
    ++n;
  }
  return n;
}

TEST(ConsulWatch, RetriesFailuresWithBackoffAndLogsOncePerStreak) {
  // Each streak ends when a blocking query is answered (index 5, then 6).
  ScriptedQuery script({"agent down", "agent down", "agent down", 4u, 5u, "again", 5u, 6u});
  ::testing::internal::CaptureStderr();
  auto start = std::chrono::steady_clock::now();
  auto seen = play(script, {.wait = 30s, .backoff_initial = 20ms, .backoff_max = 1s});
  auto elapsed = std::chrono::steady_clock::now() - start;
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  auto log = ::testing::internal::GetCapturedStderr();

  EXPECT_EQ(seen, (std::vector<int>{4, 5, 6}));
  EXPECT_EQ(sent_indexes(script), (std::vector<std::uint64_t>{0, 0, 0, 0, 4, 5, 0, 5, 6}))
      << "after a failure, one non-blocking query (the agent may have restarted)";
  // Delays of at least 10, 20, 40 (first streak) and 10ms (second): jittered halves.
  EXPECT_GE(elapsed, 80ms);
  auto count = [&](std::string_view event) {
    std::size_t n = 0;
    for (auto at = log.find(event); at != std::string::npos; at = log.find(event, at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(count("event=consul.watch.error"), 2u) << log;
  EXPECT_EQ(count("event=consul.watch.recovered"), 2u) << log;
  EXPECT_NE(log.find("error=\"agent down\""), std::string::npos) << log;
}

// The query right after a failure does not block: its answer says the agent answers, not
// that blocking queries work again. An agent that answers it and fails every blocking
// query (one at its connection limit) is one failure streak, backed off and logged once.
TEST(ConsulWatch, ANonBlockingAnswerDoesNotEndAFailureStreak) {
  ScriptedQuery script({"refused", 4u, "refused", 4u, "refused", 4u, "refused", 4u, 6u});
  ::testing::internal::CaptureStderr();
  auto start = std::chrono::steady_clock::now();
  auto seen = play(script, {.wait = 30s, .backoff_initial = 20ms, .backoff_max = 1s});
  auto elapsed = std::chrono::steady_clock::now() - start;
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  auto log = ::testing::internal::GetCapturedStderr();

  EXPECT_EQ(seen, (std::vector<int>{4, 6}));
  EXPECT_EQ(sent_indexes(script), (std::vector<std::uint64_t>{0, 0, 4, 0, 4, 0, 4, 0, 4, 6}));
  // Delays of at least 10, 20, 40 and 80ms (jittered halves of a growing backoff), not
  // four times the first one.
  EXPECT_GE(elapsed, 150ms);
  EXPECT_EQ(occurrences(log, "event=consul.watch.error"), 1u) << log;
  EXPECT_EQ(occurrences(log, "event=consul.watch.recovered"), 1u) << log;
  EXPECT_NE(log.find("event=consul.watch.recovered watch=test failures=4"), std::string::npos)
      << log;
}

TEST(ConsulWatch, AfterAFailureBlocksOnlyBrieflyAtFirst) {
  // Guards against an agent restart that left us an index from the new agent's future.
  ScriptedQuery script({4u, "agent restarting", 4u, 4u, 4u, 4u, 4u, 4u, 4u});
  play(script, {.wait = 30s, .backoff_initial = 1ms, .backoff_max = 1ms});
  std::vector<std::chrono::milliseconds> waits;
  for (const auto& query : script.queries) {
    waits.push_back(query.wait);
  }
  EXPECT_EQ(waits,
            (std::vector<std::chrono::milliseconds>{30s, 30s, 1s, 2s, 4s, 8s, 16s, 30s, 30s, 30s}));
  EXPECT_EQ(sent_indexes(script), (std::vector<std::uint64_t>{0, 4, 0, 4, 4, 4, 4, 4, 4, 4}));
}

TEST(ConsulWatch, ANewValueAtTheSameIndexIsDelivered) {
  // A restarted dev agent can replay to the very index we hold, with other data.
  ScriptedQuery script({ScriptedQuery::Indexed{4, 40}, "agent restarting",
                        ScriptedQuery::Indexed{4, 41}, ScriptedQuery::Indexed{4, 41}});
  EXPECT_EQ(play(script, {.wait = 30s, .backoff_initial = 1ms, .backoff_max = 1ms}),
            (std::vector<int>{40, 41}));
}

TEST(ConsulWatch, FlagsTheFirstAnswerAfterAFailureOrAnIndexReset) {
  // What EndpointWatch relies on to doubt a restarted agent's empty answer.
  ScriptedQuery script({4u, "agent restarting", 5u, 7u, 3u, 8u});
  std::vector<WatchDelivery> deliveries;
  EXPECT_EQ(
      play(script, {.wait = 30s, .backoff_initial = 1ms, .backoff_max = 1ms}, {}, &deliveries),
      (std::vector<int>{4, 5, 7, 3, 8}));
  std::vector<bool> disrupted;
  for (const auto& delivery : deliveries) {
    disrupted.push_back(delivery.after_disruption);
  }
  EXPECT_EQ(disrupted, (std::vector<bool>{false, true, false, true, false}));
}

TEST(ConsulWatch, StopsPromptlyWhenCancelledDuringBackoff) {
  ScriptedQuery script({"down"});
  asio::io_context ioc;
  run_async(ioc, [&]() -> asio::awaitable<void> {
    asio::cancellation_signal stop;
    bool finished = false;
    asio::co_spawn(
        co_await asio::this_coro::executor,
        watch<int>("test", script.query(), [](const int&) {},
                   {.backoff_initial = 10s, .backoff_max = 10s}),
        asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr) { finished = true; }));
    co_await sleep_for(50ms);
    stop.emit(asio::cancellation_type::terminal);
    EXPECT_TRUE(co_await eventually([&] { return finished; }, 1s));
  }());
  EXPECT_EQ(script.queries.size(), 1u);
}

// Was: the exception ended the watch, and an operation's override watch was gone until
// restart (a bad_alloc from an absurd override did that).
TEST(ConsulWatch, ACallbackExceptionIsLoggedAndTheWatchGoesOn) {
  ScriptedQuery script({1u, 2u, 3u});
  ::testing::internal::CaptureStderr();
  const auto seen = play(script, {.wait = 30s}, [](const int& value) {
    if (value == 1) {
      throw std::bad_alloc();
    }
    if (value == 2) {
      throw std::logic_error("callback bug");
    }
  });
  log::flush();  // the logger writes asynchronously
  const auto log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(sent_indexes(script), (std::vector<std::uint64_t>{0, 1, 2, 3}));
  EXPECT_NE(log.find("event=consul.watch.callback_failed watch=test error=std::bad_alloc"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("event=consul.watch.callback_failed watch=test error=\"callback bug\""),
            std::string::npos)
      << log;
}

}  // namespace
}  // namespace coromesh::consul
