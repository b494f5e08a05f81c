// SIGTERM against a loaded service: it leaves Consul first, finishes every request it
// had accepted, answers late arrivals with 503 shutting_down, and exits 0.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <mutex>
#include <thread>

#include "service_process.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::size_t instances(const ConsulAgent& consul, bool passing) {
  auto res =
      consul.api("GET", std::string("/v1/health/service/hello") + (passing ? "?passing" : ""));
  return res.status == 200 ? json::parse(res.body).as_array().size() : 0;
}

struct Outcome {
  Clock::time_point started;
  Clock::time_point finished;
  FetchResult result;
};

TEST(HelloServiceShutdown, SigtermDeregistersAndLosesNoInFlightRequest) {
  ConsulAgent consul;
  HelloService hello(&consul);
  // (Once, under TSan at -j2, the catalog had no passing instance after 15 s: what the
  // agent itself said then tells a slow start from a catalog behind its agent.)
  ASSERT_TRUE(wait_until([&] { return instances(consul, true) == 1; }, 15s))
      << "the agent's checks: " << consul.api("GET", "/v1/agent/checks").body
      << "\nthe catalog: " << consul.api("GET", "/v1/health/service/hello").body
      << "\nhello's log:\n"
      << hello.process().log_tail();

  std::mutex mutex;
  std::vector<Outcome> outcomes;
  std::atomic<int> completed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      // Like a well-behaved client (or sidecar): one request per connection, and it
      // stops calling this instance once it answers 503 or refuses connections.
      for (int i = 0; i < 1000; ++i) {
        Outcome outcome;
        outcome.started = Clock::now();
        outcome.result = hello.get("/api/v1/hello?name=load&delay_ms=150");
        outcome.finished = Clock::now();
        bool keep_going = outcome.result.status == 200;
        completed += keep_going ? 1 : 0;
        {
          std::lock_guard lock(mutex);
          outcomes.push_back(std::move(outcome));
        }
        if (!keep_going) {
          return;
        }
      }
    });
  }
  ASSERT_TRUE(wait_until([&] { return completed.load() >= 8; }, 10s));

  auto signalled = Clock::now();
  hello.process().signal(SIGTERM);
  bool left_consul = wait_until([&] { return instances(consul, true) == 0; }, 5s, 20ms);
  auto status = hello.process().wait_exit(15s);
  for (auto& client : clients) {
    client.join();
  }

  EXPECT_TRUE(left_consul) << "still passing in Consul after SIGTERM";
  EXPECT_EQ(instances(consul, false), 0u) << "not deregistered";
  ASSERT_TRUE(status.has_value()) << "hello-svc did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);

  int in_flight_finished = 0;
  int shutting_down = 0;
  int refused = 0;
  int lost = 0;
  for (const auto& o : outcomes) {
    if (o.result.status == 200 && o.started < signalled && o.finished > signalled) {
      ++in_flight_finished;
    } else if (o.result.status == 503) {
      ++shutting_down;
      EXPECT_NE(o.result.body.find("shutting_down"), std::string::npos) << o.result.body;
    } else if (o.result.status == 0 && o.result.error.rfind("connect", 0) == 0) {
      ++refused;
    } else if (o.result.status != 200) {
      ++lost;
      ADD_FAILURE() << "request lost during shutdown: status " << o.result.status << " "
                    << o.result.error;
    }
  }
  std::cout << "[ shutdown ] requests=" << outcomes.size()
            << " in_flight_at_sigterm_completed=" << in_flight_finished
            << " answered_503=" << shutting_down << " refused=" << refused << " lost=" << lost
            << "\n";
  EXPECT_GT(in_flight_finished, 0)
      << "no request was in flight at SIGTERM: the test proves nothing";
  EXPECT_EQ(lost, 0);
  auto log = hello.process().log_tail(20000);
  EXPECT_NE(log.find("event=service.shutdown.done cut_off=0"), std::string::npos) << log;
}

TEST(HelloServiceShutdown, SecondSignalForcesExit) {
  HelloService hello(nullptr, {"--shutdown-grace=30s"});
  std::thread slow([&] { hello.get("/api/v1/hello?name=s&delay_ms=5000"); });
  std::this_thread::sleep_for(200ms);
  hello.process().signal(SIGTERM);
  std::this_thread::sleep_for(200ms);
  hello.process().signal(SIGTERM);
  auto status = hello.process().wait_exit(5s);
  slow.join();
  ASSERT_TRUE(status.has_value()) << "a second SIGTERM must end the process at once";
  EXPECT_EQ(WEXITSTATUS(*status), 130);
}

}  // namespace
}  // namespace coromesh::testing
