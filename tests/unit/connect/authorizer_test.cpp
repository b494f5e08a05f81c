#include "coromesh/connect/authorizer.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <set>

#include "async_test.hpp"
#include "fake_agent_client.hpp"

namespace coromesh::connect {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using coromesh::testing::run_async;
using Source = Decision::Source;

SpiffeId client(std::string service) {
  return {"t.consul", "default", "dc1", std::move(service)};
}

class AuthorizerTest : public ::testing::Test {
 protected:
  AuthorizerTest() {
    // The fake's intentions: `denied` holds "source->target" pairs.
    consul_.authorize = [this](const std::string& target, const std::string& uri) {
      auto service = uri.substr(uri.rfind('/') + 1);
      bool deny = denied_.contains(service + "->" + target);
      return consul::AuthorizeResult{.authorized = !deny,
                                     .reason = deny ? "Matched L4 intention" : "Default allow"};
    };
  }

  Authorizer make(AuthorizerOptions options = {}) {
    options.now = [this] { return now_; };
    return Authorizer(consul_, std::move(options));
  }

  Decision ask(Authorizer& authorizer, const std::string& target, const std::string& from) {
    Decision decision;
    run_async(ioc_, [&]() -> asio::awaitable<void> {
      decision = co_await authorizer.authorize(target, client(from), "0a:0b");
    }());
    return decision;
  }

  asio::io_context ioc_;
  consul::FakeAgentClient consul_;
  std::set<std::string> denied_;
  std::chrono::steady_clock::time_point now_{std::chrono::hours(1)};
};

TEST_F(AuthorizerTest, AsksTheAgentOnceThenAnswersFromTheCacheForTheTtl) {
  auto authorizer = make({.ttl = 1s});
  auto first = ask(authorizer, "b", "a");
  EXPECT_TRUE(first.authorized);
  EXPECT_EQ(first.source, Source::agent);
  EXPECT_EQ(first.reason, "Default allow");
  EXPECT_EQ(consul_.calls.back(), "authorize b spiffe://t.consul/ns/default/dc/dc1/svc/a");

  denied_.insert("a->b");  // an intention created meanwhile
  now_ += 999ms;
  auto cached = ask(authorizer, "b", "a");
  EXPECT_TRUE(cached.authorized) << "within the TTL the cached answer stands";
  EXPECT_EQ(cached.source, Source::cache);
  EXPECT_EQ(consul_.count("authorize"), 1u);

  now_ += 1ms;
  auto fresh = ask(authorizer, "b", "a");
  EXPECT_FALSE(fresh.authorized) << "past the TTL the new intention applies";
  EXPECT_EQ(fresh.source, Source::agent);
  EXPECT_EQ(fresh.reason, "Matched L4 intention");
  EXPECT_EQ(consul_.count("authorize"), 2u);
}

TEST_F(AuthorizerTest, TellsPairsApart) {
  auto authorizer = make();
  denied_.insert("a->b");
  EXPECT_FALSE(ask(authorizer, "b", "a").authorized);
  EXPECT_TRUE(ask(authorizer, "c", "a").authorized) << "another target";
  EXPECT_TRUE(ask(authorizer, "b", "x").authorized) << "another client";
  EXPECT_EQ(consul_.count("authorize"), 3u);
  EXPECT_EQ(authorizer.cache_size(), 3u);
}

TEST_F(AuthorizerTest, AnOutageKeepsTheLastKnownDecisionsStale) {
  auto authorizer = make({.ttl = 1s});
  denied_.insert("x->b");
  ASSERT_TRUE(ask(authorizer, "b", "a").authorized);
  ASSERT_FALSE(ask(authorizer, "b", "x").authorized);

  consul_.reachable = false;
  now_ += 1h;
  auto allowed = ask(authorizer, "b", "a");
  EXPECT_TRUE(allowed.authorized) << "a known caller keeps its access";
  EXPECT_EQ(allowed.source, Source::stale);
  EXPECT_NE(allowed.detail.find("Connection refused"), std::string::npos) << allowed.detail;
  auto denied = ask(authorizer, "b", "x");
  EXPECT_FALSE(denied.authorized) << "a denied caller stays denied";
  EXPECT_EQ(denied.source, Source::stale);
  EXPECT_EQ(consul_.count("authorize"), 4u) << "each stale answer asked the agent first";
}

TEST_F(AuthorizerTest, APairNeverSeenWhileTheAgentIsDownIsDenied) {
  auto authorizer = make();
  consul_.reachable = false;
  auto decision = ask(authorizer, "b", "a");
  EXPECT_FALSE(decision.authorized);
  EXPECT_EQ(decision.source, Source::unavailable);
  EXPECT_EQ(decision.reason, "authorization_unavailable");
  EXPECT_EQ(authorizer.cache_size(), 0u) << "no guess is remembered as a decision";

  consul_.reachable = true;
  EXPECT_TRUE(ask(authorizer, "b", "a").authorized) << "the agent back: asked again";
}

// What a refused caller is told: the intentions' verdict is the caller's to fix (403,
// with Consul's reason); an agent that could not decide is the callee's trouble (503,
// nothing of the agent's complaint).
TEST_F(AuthorizerTest, ARefusalAnswerTellsDeniedFromUndecided) {
  auto authorizer = make();
  denied_.insert("a->b");
  const auto denied = refusal_answer(ask(authorizer, "b", "a"), "b", client("a"));
  EXPECT_EQ(denied.status, 403u);
  EXPECT_EQ(denied.code, "unauthorized");
  EXPECT_EQ(denied.reason, "b does not accept calls from a: Matched L4 intention");
  EXPECT_EQ(refusal_reason(ask(authorizer, "b", "a")), "unauthorized");

  consul_.reachable = false;
  const auto undecided = ask(authorizer, "b", "c");
  ASSERT_EQ(undecided.source, Source::unavailable);
  const auto unavailable = refusal_answer(undecided, "b", client("c"));
  EXPECT_EQ(unavailable.status, 503u);
  EXPECT_EQ(unavailable.code, "authorization_unavailable");
  EXPECT_EQ(refusal_reason(undecided), "authorization_unavailable") << "not a denied caller";
  EXPECT_EQ(unavailable.reason,
            "b could not ask Consul whether c may call it; retry later or "
            "another instance");

  now_ += 2s;                                    // past the cache's TTL
  const auto stale = ask(authorizer, "b", "a");  // the last decision, kept through the outage
  ASSERT_EQ(stale.source, Source::stale);
  EXPECT_EQ(refusal_answer(stale, "b", client("a")).status, 403u);
  EXPECT_EQ(refusal_reason(stale), "unauthorized") << "the intentions' verdict, kept";
}

TEST_F(AuthorizerTest, AServerErrorIsAnOutageButARefusedRequestIsNot) {
  auto authorizer = make({.ttl = 1s});
  ASSERT_TRUE(ask(authorizer, "b", "a").authorized);
  now_ += 2s;

  consul_.authorize_status = 500;  // "No cluster leader"
  auto outage = ask(authorizer, "b", "a");
  EXPECT_TRUE(outage.authorized);
  EXPECT_EQ(outage.source, Source::stale);

  consul_.authorize_status = 400;  // a request the agent refuses: configuration, not outage
  auto refused = ask(authorizer, "b", "a");
  EXPECT_FALSE(refused.authorized);
  EXPECT_EQ(refused.source, Source::error);
  EXPECT_EQ(refused.reason, "authorization_error");
  EXPECT_NE(refused.detail.find("400"), std::string::npos) << refused.detail;

  consul_.authorize_status = 500;
  EXPECT_TRUE(ask(authorizer, "b", "a").authorized) << "the 400 did not erase what was known";
}

TEST_F(AuthorizerTest, ARevokedTokenKeepsTheKnownCallersButAdmitsNoNewOne) {
  auto authorizer = make({.ttl = 1s});
  ASSERT_TRUE(ask(authorizer, "b", "a").authorized);
  now_ += 2s;

  consul_.authorize_status = 403;  // "ACL not found": the token was revoked at run time
  auto known = ask(authorizer, "b", "a");
  EXPECT_TRUE(known.authorized) << "a caller known before keeps its last decision";
  EXPECT_EQ(known.source, Source::stale);
  EXPECT_NE(known.detail.find("403"), std::string::npos) << known.detail;

  auto stranger = ask(authorizer, "b", "c");
  EXPECT_FALSE(stranger.authorized);
  EXPECT_EQ(stranger.source, Source::error);
  EXPECT_EQ(stranger.reason, "authorization_error");
}

TEST_F(AuthorizerTest, AHungAgentCountsAsDownAfterTheTimeout) {
  auto authorizer = make({.timeout = 50ms});
  consul_.hang = 10s;
  auto decision = ask(authorizer, "b", "a");
  EXPECT_FALSE(decision.authorized);
  EXPECT_EQ(decision.source, Source::unavailable);
  EXPECT_NE(decision.detail.find("timed out after 50ms"), std::string::npos) << decision.detail;
  // The bound is the call's own (its client counts a timeout), not a timer cancelling it.
  EXPECT_EQ(consul_.authorize_timeouts, std::vector<std::chrono::milliseconds>{50ms});
}

TEST_F(AuthorizerTest, TheCacheIsBoundedLeastRecentlyUsedFirst) {
  auto authorizer = make({.max_entries = 2});
  ask(authorizer, "b", "one");
  ask(authorizer, "b", "two");
  ask(authorizer, "b", "one");    // from the cache: "one" is now the most recent
  ask(authorizer, "b", "three");  // evicts "two"
  EXPECT_EQ(authorizer.cache_size(), 2u);

  consul_.reachable = false;
  now_ += 1h;
  EXPECT_EQ(ask(authorizer, "b", "one").source, Source::stale);
  EXPECT_EQ(ask(authorizer, "b", "three").source, Source::stale);
  EXPECT_EQ(ask(authorizer, "b", "two").source, Source::unavailable) << "evicted";
}

TEST_F(AuthorizerTest, ACancelledCallerIsNotAnswered) {
  auto authorizer = make({.timeout = 10s});
  consul_.hang = 10s;
  boost::asio::cancellation_signal stop;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(ioc_, authorizer.authorize("b", client("a"), "01"),
                 asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr e, Decision) {
                   error = e;
                   done = true;
                 }));
  ioc_.run_for(20ms);
  stop.emit(asio::cancellation_type::terminal);
  ioc_.run_for(2s);
  ASSERT_TRUE(done);
  coromesh::testing::expect_operation_aborted(error);
}

TEST_F(AuthorizerTest, ConcurrentCallersForOnePairShareOneAgentCall) {
  auto authorizer = make();
  consul_.hang = 20ms;
  std::vector<Decision> decisions;
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto ask_one = [&](std::string from) -> asio::awaitable<void> {
      decisions.push_back(co_await authorizer.authorize("b", client(from), "01"));
    };
    co_await (ask_one("a") && ask_one("a") && ask_one("a") && ask_one("x"));
  }());
  ASSERT_EQ(decisions.size(), 4u);
  EXPECT_EQ(consul_.count("authorize b spiffe://t.consul/ns/default/dc/dc1/svc/a"), 1u);
  EXPECT_EQ(consul_.count("authorize b spiffe://t.consul/ns/default/dc/dc1/svc/x"), 1u)
      << "another pair has its own call";
  for (const auto& decision : decisions) {
    EXPECT_TRUE(decision.authorized);
    EXPECT_EQ(decision.source, Source::agent);
  }
}

TEST_F(AuthorizerTest, AWaiterAsksItselfWhenTheCallerItWaitedForIsCancelled) {
  auto authorizer = make();
  consul_.hang = 50ms;
  boost::asio::cancellation_signal stop_first;
  bool first_done = false;
  std::exception_ptr first_error;
  asio::co_spawn(
      ioc_, authorizer.authorize("b", client("a"), "01"),
      asio::bind_cancellation_slot(stop_first.slot(), [&](std::exception_ptr e, Decision) {
        first_error = e;
        first_done = true;
      }));
  std::optional<Decision> second;
  asio::co_spawn(ioc_, authorizer.authorize("b", client("a"), "02"),
                 [&](std::exception_ptr, Decision d) { second = d; });
  ioc_.run_for(10ms);
  stop_first.emit(asio::cancellation_type::terminal);
  ioc_.run_for(500ms);
  EXPECT_TRUE(first_done && first_error) << "the cancelled caller gets no answer";
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->authorized);
  EXPECT_EQ(consul_.count("authorize"), 2u) << "the waiter asked for itself";
}

}  // namespace
}  // namespace coromesh::connect
