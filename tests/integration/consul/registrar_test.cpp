#include "coromesh/consul/registrar.hpp"

#include <gtest/gtest.h>

#include "consul_acl.hpp"
#include "consul_test_fixture.hpp"
#include "coromesh/log/logger.hpp"

namespace coromesh::consul {
namespace {

using namespace std::chrono_literals;
using RegistrarIntegration = ConsulIntegration;

const RegistrarOptions kFast{.resync_interval = 200ms,
                             .retry_initial = 50ms,
                             .retry_max = 500ms,
                             .shutdown_step_timeout = 2s};

void print_reregistered_since(std::chrono::steady_clock::time_point restarted) {
  std::cout << "[ consul ] re-registered "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - restarted)
                   .count()
            << "ms after the agent came back\n";
}

// Starts registrar.run() in the background and records how it ended.
struct RunningRegistrar {
  RunningRegistrar(asio::io_context& ioc, Registrar& registrar) {
    asio::co_spawn(ioc, registrar.run(), [this](std::exception_ptr e) {
      finished = true;
      error = e;
    });
  }
  bool finished = false;
  std::exception_ptr error;
};

TEST_F(RegistrarIntegration, ReregistersAfterAnAgentRestartAndDeregistersAtShutdown) {
  ServiceRegistration web{
      .id = "it-reg-1",
      .name = "it-reg",
      .address = "127.0.0.1",
      .port = 7010,
      .check = HttpCheck{.url = "http://" + consul_.http_address() + "/v1/status/leader",
                         .interval = 1s,
                         .timeout = 1s}};
  Registrar registrar(agent_, web, kFast);
  ::testing::internal::CaptureStderr();
  run([&]() -> asio::awaitable<void> {
    RunningRegistrar running(ioc_, registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 5s));
    EXPECT_TRUE(co_await agent_.agent_service("it-reg-1"));

    co_await off_loop([&] { consul_.restart(); });
    auto restarted = std::chrono::steady_clock::now();
    EXPECT_TRUE(co_await eventually([&] { return registrar.registrations() == 2; }, 5s))
        << "not re-registered within 5s of the agent's restart";
    print_reregistered_since(restarted);
    EXPECT_TRUE(co_await agent_.agent_service("it-reg-1"));
    auto passing = [&]() -> asio::awaitable<bool> {
      co_return (co_await agent_.health_service("it-reg", true, {})).value.size() == 1;
    };
    EXPECT_TRUE(co_await eventually_async(passing, 10s)) << "the new registration never passed";

    co_await registrar.shutdown();
    EXPECT_TRUE(running.finished);
    EXPECT_FALSE(running.error);
    EXPECT_FALSE(co_await agent_.agent_service("it-reg-1"));
    EXPECT_TRUE((co_await agent_.health_service("it-reg", false, {})).value.empty());
  }());
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  auto log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("event=consul.reregistered service=it-reg id=it-reg-1"), std::string::npos)
      << log;
  EXPECT_NE(log.find("event=consul.maintenance id=it-reg-1"), std::string::npos) << log;
  EXPECT_NE(log.find("event=consul.deregistered id=it-reg-1"), std::string::npos) << log;
}

// An agent restart must not wait for the resync tick (here 60 s, far past the deadline):
// the blocking query on the registration fails as the agent stops, and the short probes
// that follow find the new agent and re-register at once.
TEST_F(RegistrarIntegration, ReregistersAsSoonAsARestartedAgentAnswers) {
  ServiceRegistration web{.id = "it-prompt-1", .name = "it-prompt", .port = 7012};
  Registrar registrar(agent_, web,
                      {.resync_interval = 60s, .retry_initial = 50ms, .retry_max = 500ms});
  run([&]() -> asio::awaitable<void> {
    RunningRegistrar running(ioc_, registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 5s));
    co_await sleep_for(300ms);  // the blocking query on the registration is in place

    co_await off_loop([&] { consul_.restart(); });
    auto restarted = std::chrono::steady_clock::now();
    EXPECT_TRUE(co_await eventually([&] { return registrar.registrations() == 2; }, 10s))
        << "not re-registered within 10s of the agent's restart (resync every 60s)";
    print_reregistered_since(restarted);
    EXPECT_TRUE(co_await agent_.agent_service("it-prompt-1"));

    // The registration lost while the agent stays up (an operator's deregistration):
    // back at once too.
    co_await agent_.deregister_service("it-prompt-1");
    EXPECT_TRUE(co_await eventually([&] { return registrar.registrations() == 3; }, 10s));
    EXPECT_TRUE(co_await agent_.agent_service("it-prompt-1"));
    co_await registrar.shutdown();
    EXPECT_TRUE(running.finished);
    EXPECT_FALSE(running.error);
  }());
}

// While nothing changes, the blocking query on the registration is the whole check: each
// answer saying the agent still holds it is what a resync would have asked. Before,
// the resync tick cancelled the query every resync_interval (a new connection to the
// agent) and then asked twice more: once to check, once to learn the hash again.
TEST_F(RegistrarIntegration, WhileNothingChangesTheBlockingQueryIsTheOnlyCallToTheAgent) {
  ServiceRegistration web{.id = "it-quiet-1", .name = "it-quiet", .port = 7016};
  Registrar registrar(agent_, web, kFast);  // resync_interval 200 ms
  const auto requests = [&] {
    std::uint64_t total = 0;
    for (const auto count : agent_.request_counts()) {
      total += count;
    }
    return total;
  };
  run([&]() -> asio::awaitable<void> {
    RunningRegistrar running(ioc_, registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 5s));
    co_await sleep_for(300ms);  // the blocking query in place
    const auto before = requests();
    co_await sleep_for(2s);  // about 10 resync intervals
    const auto calls = requests() - before;
    std::cout << "[ consul ] " << calls << " calls to the agent in 2s, resync_interval 200ms\n";
    // One answered query per interval (Consul adds up to 1/16 of the wait), and slack.
    EXPECT_LE(calls, 13u) << "the registrar asks more than its blocking query";
    EXPECT_GE(calls, 5u) << "the blocking query is not answered every resync_interval";
    EXPECT_EQ(registrar.registrations(), 1u);
    co_await registrar.shutdown();
    EXPECT_TRUE(running.finished);
    EXPECT_FALSE(running.error);
  }());
}

// The agent refuses an update of the definition (400: a Meta key with Consul's reserved
// prefix) and, meanwhile, loses the registration it had accepted (an operator's
// deregistration here; an agent restart alike). The instance must not vanish from the
// catalog: the last definition the agent accepted is registered again, and the refusal
// is the caller's fault, logged as an error and counted as `rejected`.
TEST_F(RegistrarIntegration, ARefusedUpdateLeavesTheLastAcceptedDefinitionRegistered) {
  ServiceRegistration accepted{
      .id = "it-refused-1", .name = "it-refused", .port = 7016, .meta = {{"version", "1"}}};
  Registrar registrar(agent_, accepted, kFast);
  const auto rejected = [&] {
    return agent_.request_counts()[static_cast<std::size_t>(RequestOutcome::rejected)];
  };
  ::testing::internal::CaptureStderr();
  run([&]() -> asio::awaitable<void> {
    RunningRegistrar running(ioc_, registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 5s));
    auto refused = accepted;
    refused.meta = {{"version", "2"}, {"consul-version", "2"}};  // reserved: refused with 400
    registrar.update(refused);
    EXPECT_TRUE(co_await eventually([&] { return rejected() >= 1; }, 5s))
        << "the agent did not refuse the update";

    co_await agent_.deregister_service("it-refused-1");  // the accepted one is lost too
    std::optional<AgentService> held;
    auto registered_again = [&]() -> asio::awaitable<bool> {
      held = co_await agent_.agent_service("it-refused-1");
      co_return held.has_value();
    };
    EXPECT_TRUE(co_await eventually_async(registered_again, 10s))
        << "nothing registered 10s after the agent lost the registration (resync every 200ms)";
    if (held) {
      EXPECT_EQ(held->meta, (std::map<std::string, std::string>{{"version", "1"}}))
          << "not the last accepted definition";
    }
    EXPECT_TRUE(registrar.registered());
    EXPECT_FALSE(running.finished) << "a refused update ended run()";
    co_await registrar.shutdown();
    EXPECT_FALSE(running.error);
  }());
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  auto log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("level=error event=consul.update.rejected id=it-refused-1"), std::string::npos)
      << log;
  EXPECT_NE(log.find("event=consul.reregistered service=it-refused id=it-refused-1"),
            std::string::npos)
      << log;
}

TEST_F(RegistrarIntegration, WaitsForAnAgentThatIsNotUpYet) {
  ServiceRegistration early{.id = "it-early-1", .name = "it-early", .port = 7011};
  Registrar registrar(agent_, early, kFast);
  run([&]() -> asio::awaitable<void> {
    co_await off_loop([&] { consul_.stop(); });
    RunningRegistrar running(ioc_, registrar);
    co_await sleep_for(300ms);  // a few failed attempts (not an assertion)
    EXPECT_FALSE(registrar.registered());
    co_await off_loop([&] { consul_.restart(); });
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 5s));
    EXPECT_EQ(registrar.registrations(), 1u);
    EXPECT_TRUE(co_await agent_.agent_service("it-early-1"));
    co_await registrar.shutdown();
  }());
}

TEST_F(RegistrarIntegration, ARejectedRegistrationStopsRunWithTheReason) {
  ServiceRegistration nameless{.id = "it-nameless"};
  Registrar registrar(agent_, nameless, kFast);
  std::exception_ptr error;
  run([&]() -> asio::awaitable<void> {
    RunningRegistrar running(ioc_, registrar);
    EXPECT_TRUE(co_await eventually([&] { return running.finished; }, 5s));
    error = running.error;
    co_await registrar.shutdown();  // still fine to call
  }());
  ASSERT_TRUE(error);
  try {
    std::rethrow_exception(error);
  } catch (const ConsulError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.body_excerpt(), "Missing service name");
  }
}

// An agent at its per-client connection limit (limits.http_max_conns_per_client) answers
// a new connection with 429 and closes it, while the connection it already serves keeps
// working. The registrar's blocking query on its registration needs a connection of its
// own: it fails at once, the resync that follows succeeds on the pooled connection, and
// the registrar must then leave the checking to its resync tick, not hold the failing
// query again at once, over and over.
class ConnectionLimitedAgent : public ConsulIntegration {
 protected:
  ConnectionLimitedAgent()
      : ConsulIntegration({.extra_config = "limits { http_max_conns_per_client = 1 }"}) {}

  std::uint64_t requests() const {
    std::uint64_t total = 0;
    for (const auto count : agent_.request_counts()) {
      total += count;
    }
    return total;
  }
};

// Another client holding the one connection the agent allows: the agent answers 429 Too
// Many Requests, an agent too busy for us right now, not a refusal of the registration.
// The registrar waits for it with backoff as for an agent not up yet; it must not end
// run() as if the registration itself were invalid (the service would exit).
TEST_F(ConnectionLimitedAgent, A429IsWaitedOutNotTakenForARejectedRegistration) {
  asio::ip::tcp::socket other(ioc_);
  ASSERT_TRUE(take_the_only_connection(consul_, other));
  ServiceRegistration web{.id = "it-busy-1", .name = "it-busy", .port = 7014};
  Registrar registrar(agent_, web, kFast);
  run([&]() -> asio::awaitable<void> {
    RunningRegistrar running(ioc_, registrar);
    const auto throttled = [&] {
      return agent_.request_counts()[static_cast<std::size_t>(RequestOutcome::throttled)];
    };
    EXPECT_TRUE(co_await eventually([&] { return running.finished || throttled() >= 2; }, 5s));
    EXPECT_FALSE(running.finished) << "run() ended on a 429";
    // Counted as the agent's doing, not as requests of ours it refused.
    EXPECT_EQ(agent_.request_counts()[static_cast<std::size_t>(RequestOutcome::rejected)], 0u);
    other.close();
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 5s));
    co_await registrar.shutdown();
    EXPECT_TRUE(running.finished);
    EXPECT_FALSE(running.error);
  }());
}

TEST_F(ConnectionLimitedAgent, ABlockingQueryTheAgentRefusesDoesNotMakeTheRegistrarSpin) {
  ServiceRegistration web{.id = "it-limited-1", .name = "it-limited", .port = 7013};
  Registrar registrar(agent_, web,
                      {.resync_interval = 60s, .retry_initial = 50ms, .retry_max = 500ms});
  run([&]() -> asio::awaitable<void> {
    RunningRegistrar running(ioc_, registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 5s));
    const auto after_registration = requests();
    co_await sleep_for(1s);  // the registrar's traffic while nothing changes
    const auto calls = requests() - after_registration;
    std::cout << "[ consul ] " << calls << " calls to the agent in 1s after registering (";
    for (std::size_t i = 0; i < kRequestOutcomes; ++i) {
      std::cout << (i == 0 ? "" : " ") << to_string(static_cast<RequestOutcome>(i)) << '='
                << agent_.request_counts()[i];
    }
    std::cout << ")\n";
    EXPECT_LT(calls, 20u) << "the registrar keeps calling an agent that has nothing new";
    co_await registrar.shutdown();
    EXPECT_TRUE(running.finished);
    EXPECT_FALSE(running.error);
  }());
}

// A token revoked at run time: every call is refused with 403 "ACL not found". That is
// the caller's credentials, not an agent gone away: the registrar checks again at its
// resync tick, as when the agent refuses an update, rather than probing it as fast as
// it probes an agent that stopped answering (outage_probe_*: here 100 ms up to 1 s).
class RegistrarWithAcl : public ConsulIntegration {
 protected:
  RegistrarWithAcl() : ConsulIntegration({.acl = true}) {}
};

TEST_F(RegistrarWithAcl, ARevokedTokenIsCheckedAtTheResyncTickNotProbedAsAnOutage) {
  const auto token = coromesh::testing::create_service_token(consul_, "it-acl");
  HttpAgentClient client(ioc_.get_executor(), {.address = consul_.http_address(),
                                               .token = token.secret_id,
                                               .request_timeout = std::chrono::seconds(2)});
  ServiceRegistration web{.id = "it-acl-1", .name = "it-acl", .port = 7015};
  Registrar registrar(client, web, {.resync_interval = 5s});
  const auto forbidden = [&] {
    return client.request_counts()[static_cast<std::size_t>(RequestOutcome::forbidden)];
  };
  run([&]() -> asio::awaitable<void> {
    RunningRegistrar running(ioc_, registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 5s));
    coromesh::testing::delete_token(consul_, token);
    EXPECT_TRUE(co_await eventually([&] { return forbidden() > 0; }, 10s));
    const auto first = forbidden();
    co_await sleep_for(4s);  // the registrar's calls meanwhile (not an assertion)
    const auto refused = forbidden() - first;
    std::cout << "[ consul ] " << refused << " refused calls in the 4s after the first\n";
    // At the tick: one blocking query and one check, each refused, per 5 s.
    EXPECT_LE(refused, 3u) << "a 403 was probed like an agent outage";
    EXPECT_FALSE(running.finished);
    co_await registrar.shutdown();
    EXPECT_FALSE(running.error);
  }());
}

}  // namespace
}  // namespace coromesh::consul
