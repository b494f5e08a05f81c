// The declared QoS of a running service, against a real Consul agent: what it publishes
// in its Meta, and live overrides through Consul KV (applied, refused, removed).

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <coromesh/runtime/io_pool.hpp>
#include <coromesh/service/service.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "service_process.hpp"

struct Ping {
  std::int64_t n = 0;
};
BOOST_DESCRIBE_STRUCT(Ping, (), (n))
COROMESH_OPERATION(ping, GET, "/api/v1/ping", Ping, std::int64_t, CLIENT_QOS(qos::timeout{2s}));
// Four more operations for a caller with many clients.
COROMESH_OPERATION(ping_a, GET, "/api/v1/ping_a", Ping, std::int64_t, CLIENT_QOS(qos::timeout{2s}));
COROMESH_OPERATION(ping_b, GET, "/api/v1/ping_b", Ping, std::int64_t, CLIENT_QOS(qos::timeout{2s}));
COROMESH_OPERATION(ping_c, GET, "/api/v1/ping_c", Ping, std::int64_t, CLIENT_QOS(qos::timeout{2s}));
COROMESH_OPERATION(ping_d, GET, "/api/v1/ping_d", Ping, std::int64_t, CLIENT_QOS(qos::timeout{2s}));
// POSTs: one that may not be retried, one whose handler is idempotent by design.
COROMESH_OPERATION(submit, POST, "/api/v1/submit", Ping, std::int64_t, QOS(qos::timeout{2s}),
                   CLIENT_QOS(qos::timeout{2s}));
COROMESH_OPERATION(submit_keyed, POST, "/api/v1/submit_keyed", Ping, std::int64_t,
                   CLIENT_QOS(qos::timeout{2s},
                              qos::retry{.max_attempts = 2, .non_idempotent = true}));

namespace coromesh::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kKey = "/v1/kv/coromesh/qos/hello/greet";

// The whole log (ChildProcess::log_tail with room for all of it).
std::string read_log(const ChildProcess& process) {
  return process.log_tail(std::size_t{1} << 24);
}

void put_override(const ConsulAgent& consul, const std::string& document) {
  auto res = consul.api("PUT", kKey, document);
  ASSERT_EQ(res.status, 200) << res.body;
}

// An in-process service registered with `consul`: one io thread, warnings only.
config::ServiceConfig registered_with(const ConsulAgent& consul, std::string name) {
  config::ServiceConfig config;
  config.name = std::move(name);
  config.consul = {"127.0.0.1", consul.http_port()};
  config.io_threads = 1;
  config.log_level = log::Level::warn;
  return config;
}

// How many times `needle` occurs in `text`.
std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

// Established TCP connections of this process to a loopback port: its sockets' inodes (in
// /proc/self/fd) matched against /proc/self/net/tcp.
int connections_to(std::uint16_t port) {
  std::set<std::string> inodes;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const auto target = std::filesystem::read_symlink(fd.path(), error).string();
    if (!error && target.starts_with("socket:[")) {
      inodes.insert(target.substr(8, target.size() - 9));
    }
  }
  std::ifstream table("/proc/self/net/tcp");
  std::string line;
  std::getline(table, line);  // the header
  int count = 0;
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
        timeout >> inode;
    const auto colon = remote.find(':');
    if (state == "01" /* ESTABLISHED */ && colon != std::string::npos &&
        std::stoul(remote.substr(colon + 1), nullptr, 16) == port && inodes.contains(inode)) {
      ++count;
    }
  }
  return count;
}

// Sends greets until one is answered `status`, at most for `within`; returns how long it took.
std::optional<std::chrono::milliseconds> first_answer(const HelloService& hello, int status,
                                                      std::chrono::milliseconds within) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 500 && std::chrono::steady_clock::now() - start < within; ++i) {
    if (hello.get("/api/v1/hello?name=kv").status == status) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
    }
    std::this_thread::sleep_for(10ms);
  }
  return std::nullopt;
}

// The service's Meta as the agent has it (empty when it has no such service yet).
json::object meta_of(const ConsulAgent& consul, const std::string& id) {
  auto res = consul.api("GET", "/v1/agent/service/" + id);
  if (res.status != 200) {
    return {};
  }
  return json::parse(res.body).at("Meta").as_object();
}

std::string meta_value(const ConsulAgent& consul, const std::string& id, const std::string& key) {
  const auto meta = meta_of(consul, id);
  const auto* value = meta.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->get_string()) : "";
}

TEST(QosOverrides, TheDeclaredQosShowsInTheServiceMeta) {
  ConsulAgent consul;
  HelloService hello(&consul);
  json::object meta;
  ASSERT_TRUE(wait_until(
      [&] {
        auto res = consul.api("GET", "/v1/agent/service/" + hello.instance_id());
        if (res.status != 200) {
          return false;
        }
        meta = json::parse(res.body).at("Meta").as_object();
        return true;
      },
      15s));
  ASSERT_TRUE(meta.contains("qos_greet")) << json::serialize(meta);
  EXPECT_EQ(meta.at("qos_greet").as_string(), "rate_limit=100000/1s timeout=15s bulkhead=1024");
  EXPECT_FALSE(meta.contains("qos_plain")) << "a raw route has no declared QoS";
  EXPECT_EQ(meta.at("qos_overrides").as_string(), "coromesh/qos/hello/");
}

TEST(QosOverrides, AKvChangeAltersTheRateLimitWithinASecondAndDeletingItRestoresIt) {
  ConsulAgent consul;
  HelloService hello(&consul);
  ASSERT_EQ(hello.get("/api/v1/hello?name=a").status, 200);
  ASSERT_TRUE(wait_until(
      [&] { return read_log(hello.process()).find("consul.registered") != std::string::npos; },
      15s))
      << read_log(hello.process());

  put_override(consul, R"({"rate_limit": {"permits": 1, "burst": 1, "period": "1h"}})");
  auto limited = first_answer(hello, 429, 1s);
  ASSERT_TRUE(limited) << "no 429 within a second of the KV change\n" << hello.process().log_tail();
  std::cout << "[ kv ] rate limit override took effect after " << limited->count() << " ms\n";

  auto rejected = hello.get("/api/v1/hello?name=b");
  EXPECT_EQ(rejected.status, 429);
  auto body = json::parse(rejected.body).as_object();
  EXPECT_EQ(body.at("error").as_string(), "rate_limited");
  EXPECT_EQ(body.at("policy").as_string(), "rate_limit");
  // The service's logger writes from its own thread, a few milliseconds behind.
  EXPECT_TRUE(wait_until(
      [&] {
        return read_log(hello.process()).find("event=qos.override_applied") != std::string::npos;
      },
      2s));

  auto metrics = hello.get("/metrics").body;
  EXPECT_NE(
      metrics.find(
          R"(coromesh_qos_rejections_total{operation="greet",policy="rate_limit",reason="rate_limited",side="server"})"),
      std::string::npos)
      << metrics.substr(0, 3000);
  EXPECT_NE(
      metrics.find(
          R"(coromesh_http_server_requests_total{code="429",operation="greet",service="hello"})"),
      std::string::npos);

  // The Meta shows the QoS in force, not the declaration.
  const std::string declared = "rate_limit=100000/1s timeout=15s bulkhead=1024";
  std::string shown;
  EXPECT_TRUE(wait_until(
      [&] {
        shown = meta_value(consul, hello.instance_id(), "qos_greet");
        return !shown.empty() && shown != declared;
      },
      5s))
      << "the Meta still shows the declaration: " << shown;
  EXPECT_NE(shown.find("rate_limit=1/"), std::string::npos) << shown;

  ASSERT_EQ(consul.api("DELETE", kKey).status, 200);
  EXPECT_TRUE(first_answer(hello, 200, 2s)) << "deleting the key did not restore the declaration";
  // The service's logger writes from its own thread, a few milliseconds behind.
  EXPECT_TRUE(wait_until(
      [&] {
        return read_log(hello.process()).find("event=qos.override_removed") != std::string::npos;
      },
      2s));
  EXPECT_TRUE(wait_until(
      [&] { return meta_value(consul, hello.instance_id(), "qos_greet") == declared; }, 5s))
      << "after the key was deleted the Meta shows "
      << meta_value(consul, hello.instance_id(), "qos_greet");
}

TEST(QosOverrides, ABadKvValueIsRefusedAndLoggedAndTheOldPolicyKeepsRunning) {
  ConsulAgent consul;
  HelloService hello(&consul);
  ASSERT_TRUE(wait_until(
      [&] { return read_log(hello.process()).find("consul.registered") != std::string::npos; },
      15s));
  put_override(consul, R"({"rate_limit": {"permits": 0}})");
  ASSERT_TRUE(wait_until(
      [&] { return read_log(hello.process()).find("rate of 0 permits") != std::string::npos; }, 5s))
      << hello.process().log_tail();
  put_override(consul, "{not json");
  ASSERT_TRUE(wait_until(
      [&] { return read_log(hello.process()).find("not valid JSON") != std::string::npos; }, 5s))
      << hello.process().log_tail();
  const auto log = read_log(hello.process());
  EXPECT_NE(log.find("event=qos.override_refused"), std::string::npos);
  EXPECT_EQ(log.find("event=qos.override_applied"), std::string::npos);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(hello.get("/api/v1/hello?name=still").status, 200)
        << "the refused override changed the running policy";
  }
  EXPECT_TRUE(hello.process().running());
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++count;
  }
  return count;
}

// Consul wakes the watch on every write that changes the key's bytes, also one that only
// respaces or reorders the same override (a config sync re-serializing it): the policies
// do not change, so nothing is applied, logged or re-registered again. The pauses only
// give the watch time to see each write on its own (a write it did not see apart could
// not make this test fail).
TEST(QosOverrides, TheSameOverrideRewrittenIsNotAppliedAgain) {
  ConsulAgent consul;
  HelloService hello(&consul);
  ASSERT_TRUE(wait_until(
      [&] { return read_log(hello.process()).find("consul.registered") != std::string::npos; },
      15s));
  const std::string applied = "event=qos.override_applied";
  put_override(consul, R"({"rate_limit": {"permits": 1000}})");
  ASSERT_TRUE(wait_until([&] { return count_of(read_log(hello.process()), applied) == 1; }, 5s))
      << hello.process().log_tail();
  for (std::size_t spaces = 1; spaces <= 5; ++spaces) {
    put_override(consul, R"({"rate_limit": {"permits": 1000}})" + std::string(spaces, ' '));
    std::this_thread::sleep_for(200ms);
  }
  put_override(consul, R"({"rate_limit": {"permits": 2000}})");
  ASSERT_TRUE(wait_until(
      [&] { return read_log(hello.process()).find("rate_limit=2000/") != std::string::npos; }, 5s))
      << hello.process().log_tail();
  EXPECT_EQ(count_of(read_log(hello.process()), applied), 2U) << read_log(hello.process());
}

// The calling side of an operation has its own key, below client/, and its own Meta key.
TEST(QosOverrides, AClientsQosIsOverriddenUnderItsOwnKeyAndItsMetaFollows) {
  namespace asio = boost::asio;
  ConsulAgent consul;
  config::ServiceConfig callee_config;
  callee_config.name = "pong";
  callee_config.consul_register = false;
  callee_config.io_threads = 1;
  Service callee(callee_config);
  callee.serve(ping, [](Ping in) -> asio::awaitable<std::int64_t> { co_return in.n; });
  callee.start();

  const auto caller_config = registered_with(consul, "pinger");
  Service caller(caller_config);
  auto& client = caller.client(ping, {.host = "127.0.0.1", .port = callee.port()});
  caller.start();
  auto call = [&] {
    return asio::co_spawn(
               caller.pool().executor(0),
               [&]() -> asio::awaitable<std::int64_t> {
                 co_return co_await client.execute(Ping{7});
               },
               asio::use_future)
        .get();
  };
  EXPECT_EQ(call(), 7);
  ASSERT_TRUE(wait_until(
      [&] { return meta_value(consul, caller.instance_id(), "qos_client_ping") == "timeout=2s"; },
      15s))
      << json::serialize(meta_of(consul, caller.instance_id()));

  const std::string key = "/v1/kv/coromesh/qos/pinger/client/ping";
  ASSERT_EQ(consul.api("PUT", key, R"({"rate_limit": {"permits": 1, "burst": 1, "period": "1h"}})")
                .status,
            200);
  EXPECT_TRUE(wait_until(
      [&] {
        return meta_value(consul, caller.instance_id(), "qos_client_ping").find("rate_limit=1/") !=
               std::string::npos;
      },
      5s))
      << meta_value(consul, caller.instance_id(), "qos_client_ping");
  // At most one call an hour now: the second is refused by the client, before the wire.
  bool refused = false;
  for (int i = 0; i < 3 && !refused; ++i) {
    try {
      call();
    } catch (const qos::QosRejected& rejected) {
      refused = rejected.reason() == qos::Reason::rate_limited;
    }
  }
  EXPECT_TRUE(refused) << "the client-side override was not applied";

  ASSERT_EQ(consul.api("DELETE", key).status, 200);
  EXPECT_TRUE(wait_until(
      [&] { return meta_value(consul, caller.instance_id(), "qos_client_ping") == "timeout=2s"; },
      5s));
  EXPECT_EQ(call(), 7) << "deleting the key did not restore the declaration";
  caller.request_shutdown();
  caller.wait();
  callee.request_shutdown();
  callee.wait();
}

// All of a service's override keys are one blocking query on its prefix. One query per
// key held one connection to the agent per declared operation, and the agent allows 200
// per client address, shared by every process on the host (a 429 past that).
TEST(QosOverrides, EveryOperationsKeyIsWatchedThroughOneConnectionToTheAgent) {
  ConsulAgent consul;
  const auto caller_config = registered_with(consul, "many");
  Service caller(caller_config);
  const http::Destination nowhere{.host = "127.0.0.1", .port = 9};
  caller.client(ping, nowhere);
  caller.client(ping_a, nowhere);
  caller.client(ping_b, nowhere);
  caller.client(ping_c, nowhere);
  caller.start();
  caller.client(ping_d, nowhere);  // made after start-up: its key is in the same watch
  ASSERT_TRUE(wait_until(
      [&] { return !meta_value(consul, caller.instance_id(), "qos_client_ping_d").empty(); }, 15s));

  // The overrides apply, each to its own operation.
  ASSERT_EQ(consul
                .api("PUT", "/v1/kv/coromesh/qos/many/client/ping_a",
                     R"({"timeout": {"per_attempt": "3s"}})")
                .status,
            200);
  ASSERT_EQ(consul
                .api("PUT", "/v1/kv/coromesh/qos/many/client/ping_c",
                     R"({"timeout": {"per_attempt": "4s"}})")
                .status,
            200);
  EXPECT_TRUE(wait_until(
      [&] {
        return meta_value(consul, caller.instance_id(), "qos_client_ping_a") == "timeout=3s" &&
               meta_value(consul, caller.instance_id(), "qos_client_ping_c") == "timeout=4s";
      },
      5s))
      << json::serialize(meta_of(consul, caller.instance_id()));
  EXPECT_EQ(meta_value(consul, caller.instance_id(), "qos_client_ping_b"), "timeout=2s");
  ASSERT_EQ(consul
                .api("PUT", "/v1/kv/coromesh/qos/many/client/ping_d",
                     R"({"timeout": {"per_attempt": "5s"}})")
                .status,
            200);
  EXPECT_TRUE(wait_until(
      [&] { return meta_value(consul, caller.instance_id(), "qos_client_ping_d") == "timeout=5s"; },
      5s))
      << json::serialize(meta_of(consul, caller.instance_id()));

  // Held: the registrar's blocking query and the overrides' one, and at most two idle
  // keep-alive connections besides (the registrar's resync and the non-blocking queries).
  // One blocking query per key held six with five operations, besides the idle ones.
  int held = 0;
  EXPECT_TRUE(wait_until(
      [&] {
        held = connections_to(consul.http_port());
        return held <= 4;
      },
      5s))
      << held << " connections to the agent for 5 override keys";
  caller.request_shutdown();
  caller.wait();
}

// A service that declares nothing at start-up holds no watch (a sidecar); its first client
// starts it, and that client's key applies.
TEST(QosOverrides, AServiceDeclaringNothingAtStartUpWatchesFromItsFirstClient) {
  ConsulAgent consul;
  ASSERT_EQ(consul
                .api("PUT", "/v1/kv/coromesh/qos/later/client/ping",
                     R"({"timeout": {"per_attempt": "6s"}})")
                .status,
            200);
  const auto later_config = registered_with(consul, "later");
  Service later(later_config);
  later.start();
  later.client(ping, http::Destination{.host = "127.0.0.1", .port = 9});
  EXPECT_TRUE(wait_until(
      [&] { return meta_value(consul, later.instance_id(), "qos_client_ping") == "timeout=6s"; },
      15s))
      << json::serialize(meta_of(consul, later.instance_id()));
  later.request_shutdown();
  later.wait();
}

// A key below the prefix that names no operation changes nothing: said once, not silently.
TEST(QosOverrides, AKeyNoOperationHasIsWarnedOfOnceAndChangesNothingElse) {
  ConsulAgent consul;
  HelloService hello(&consul);
  ASSERT_TRUE(wait_until(
      [&] { return read_log(hello.process()).find("consul.registered") != std::string::npos; },
      15s));
  ASSERT_EQ(
      consul.api("PUT", "/v1/kv/coromesh/qos/hello/gret", R"({"timeout": {"per_attempt": "1s"}})")
          .status,
      200);
  ASSERT_TRUE(wait_until(
      [&] {
        return read_log(hello.process()).find("event=qos.override_unmatched") != std::string::npos;
      },
      5s))
      << hello.process().log_tail();
  EXPECT_NE(read_log(hello.process()).find("key=coromesh/qos/hello/gret"), std::string::npos);

  // The right key is applied once; writing it again with the typo still there neither warns
  // of the typo again nor re-applies anything else.
  put_override(consul, R"({"timeout": {"per_attempt": "7s"}})");
  ASSERT_TRUE(wait_until(
      [&] {
        return read_log(hello.process()).find("event=qos.override_applied") != std::string::npos;
      },
      5s))
      << hello.process().log_tail();
  ASSERT_EQ(consul.api("PUT", "/v1/kv/coromesh/qos/unrelated", "x").status, 200);
  put_override(consul, R"({"timeout": {"per_attempt": "8s"}})");
  ASSERT_TRUE(wait_until(
      [&] { return occurrences(read_log(hello.process()), "event=qos.override_applied") == 2; },
      5s))
      << hello.process().log_tail();
  const auto log = read_log(hello.process());
  EXPECT_EQ(occurrences(log, "event=qos.override_unmatched"), 1u) << log;
  EXPECT_EQ(log.find("coromesh/qos/unrelated"), std::string::npos) << log;
  EXPECT_EQ(hello.get("/api/v1/hello?name=ok").status, 200);
}

// A server retry on a POST does not compile without qos::retry{.non_idempotent = true},
// and the README says the same checks run on every override. An override that gave a
// POST's server side a retry was applied, its Meta showing "retry=3x25ms+budget", yet no
// call was ever retried (its handler ran, whatever failed): the operator was told of a
// retry that did not exist. It is refused. A client's retry on a POST is accepted: it
// sends again a request that never reached the callee (qos/fault.hpp); a POST declared
// idempotent by design keeps its retry overridable.
TEST(QosOverrides, AServerRetryOnANonIdempotentOperationIsRefusedUnlessTheDeclarationOptedIn) {
  namespace asio = boost::asio;
  ConsulAgent consul;
  const auto config = registered_with(consul, "poster");
  Service poster(config);
  poster.serve(submit, [](Ping in) -> asio::awaitable<std::int64_t> { co_return in.n; });
  poster.client(submit, http::Destination{.host = "127.0.0.1", .port = 9});
  poster.client(submit_keyed, http::Destination{.host = "127.0.0.1", .port = 9});
  poster.client(ping, http::Destination{.host = "127.0.0.1", .port = 9});
  poster.start();
  const auto id = poster.instance_id();
  ASSERT_TRUE(
      wait_until([&] { return meta_value(consul, id, "qos_client_ping") == "timeout=2s"; }, 15s))
      << json::serialize(meta_of(consul, id));

  const std::string prefix = "/v1/kv/coromesh/qos/poster/";
  const std::string retry = R"({"retry": {"max_attempts": 3}})";
  ASSERT_EQ(consul.api("PUT", prefix + "submit", retry).status, 200);
  ASSERT_EQ(consul.api("PUT", prefix + "client/submit", retry).status, 200);
  ASSERT_EQ(consul.api("PUT", prefix + "client/submit_keyed", retry).status, 200);
  // One blocking query reads the whole prefix: once this later key shows, the ones above
  // have been read too.
  ASSERT_EQ(
      consul.api("PUT", prefix + "client/ping", R"({"timeout": {"per_attempt": "3s"}})").status,
      200);
  ASSERT_TRUE(
      wait_until([&] { return meta_value(consul, id, "qos_client_ping") == "timeout=3s"; }, 5s))
      << json::serialize(meta_of(consul, id));
  EXPECT_EQ(meta_value(consul, id, "qos_submit"), "timeout=2s");
  EXPECT_NE(meta_value(consul, id, "qos_client_submit").find("retry=3x"), std::string::npos)
      << json::serialize(meta_of(consul, id));
  EXPECT_NE(meta_value(consul, id, "qos_client_submit_keyed").find("retry=3x"), std::string::npos)
      << json::serialize(meta_of(consul, id));
  poster.request_shutdown();
  poster.wait();
}

}  // namespace
}  // namespace coromesh::testing
