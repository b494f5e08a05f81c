// Shutdown with requests still inside a declared operation: the frames cut off after the
// grace period point at the service's handlers, QoS policies and metrics, so they must
// unwind before those are destroyed. The service's metrics registry holds a probe whose
// destructor records when it went; each handler frame holds one that records, as the
// frame unwinds, whether the registry was already gone. Before the fix the frames were
// destroyed with the io_contexts, after every other member of the service: a bulkhead
// queue released its permit into freed memory (SIGSEGV, or an ASan report).

#include <gtest/gtest.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <coromesh/metrics/registry.hpp>
#include <coromesh/service/service.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http_fetch.hpp"
#include "in_process_service.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct Nap {
  std::int64_t ms = 0;
};
BOOST_DESCRIBE_STRUCT(Nap, (), (ms))

// One slot, a queue of four: the second request waits in the bulkhead's queue.
COROMESH_OPERATION(nap, GET, "/api/v1/nap", Nap, std::int64_t,
                   QOS(qos::bulkhead{.max_concurrent = 1, .max_queue = 4, .max_wait = 10s}));

// Every policy that judges the callee, tuned so that one failure would show: a breaker
// that opens on its first failed call, an adaptive limit that a drop would lower below 20.
COROMESH_OPERATION(judged_nap, GET, "/api/v1/judged_nap", Nap, std::int64_t,
                   QOS(qos::circuit_breaker{.failure_rate = 0.5, .window = 1, .minimum_calls = 1},
                       qos::adaptive_limit{.initial_limit = 20}, qos::timeout{.per_attempt = 30s}));

struct Observations {
  std::atomic<int> frames_entered{0};
  std::atomic<bool> registry_gone{false};
  std::atomic<int> frames_unwound{0};
  std::atomic<int> frames_unwound_after_registry{0};
};

// Lives in the service's metrics registry: destroyed with the service's members.
class RegistryProbe final : public prometheus::Collectable {
 public:
  explicit RegistryProbe(std::shared_ptr<Observations> seen) : seen_(std::move(seen)) {}
  ~RegistryProbe() override { seen_->registry_gone = true; }
  std::vector<prometheus::MetricFamily> Collect() const override { return {}; }

 private:
  std::shared_ptr<Observations> seen_;
};

// Lives in a handler's coroutine frame: destroyed when the frame unwinds.
class FrameProbe {
 public:
  explicit FrameProbe(std::shared_ptr<Observations> seen) : seen_(std::move(seen)) {
    ++seen_->frames_entered;
  }
  FrameProbe(const FrameProbe&) = delete;
  FrameProbe& operator=(const FrameProbe&) = delete;
  ~FrameProbe() {
    ++seen_->frames_unwound;
    if (seen_->registry_gone) {
      ++seen_->frames_unwound_after_registry;
    }
  }

 private:
  std::shared_ptr<Observations> seen_;
};

// A handler that naps `ms` milliseconds, with a FrameProbe in its frame.
auto napper(std::shared_ptr<Observations> seen) {
  return [seen = std::move(seen)](Nap in) -> asio::awaitable<std::int64_t> {
    const FrameProbe probe(seen);
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(in.ms));
    co_await timer.async_wait(asio::use_awaitable);
    co_return in.ms;
  };
}

// The service's gauge of requests being served, read from its own exposition.
int requests_in_flight(const coromesh::metrics::MetricsRegistry& metrics) {
  const std::string text = metrics.render();
  const auto at = text.find("coromesh_http_server_requests_in_flight{");
  const auto value = at == std::string::npos ? at : text.find("} ", at);
  return value == std::string::npos ? 0 : std::stoi(text.substr(value + 2));
}

TEST(ShutdownLifetime, FramesCutOffByShutdownUnwindBeforeTheServiceIsDestroyed) {
  auto seen = std::make_shared<Observations>();
  auto service = std::make_unique<coromesh::Service>(
      coromesh::testing::in_process("napper", coromesh::log::Level::error, 200ms));
  service->metrics().add_collectable(std::make_shared<RegistryProbe>(seen));
  service->serve(nap, napper(seen));
  service->start();
  const auto port = service->port();

  // Two 3 s requests: one holds the bulkhead's slot, the other waits in its queue.
  std::vector<std::thread> callers;
  for (int i = 0; i < 2; ++i) {
    callers.emplace_back([port] {
      coromesh::testing::http_fetch("127.0.0.1", port, "/api/v1/nap?ms=3000", {.timeout = 5s});
    });
  }
  // Shut down only once one request is in its handler and the other was read too (and so
  // is queued in the bulkhead): polled, not slept, since sanitizer builds are several
  // times slower. The deadline only bounds a test that would otherwise hang.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((seen->frames_entered.load() < 1 || requests_in_flight(service->metrics()) < 2) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  // EXPECT, not ASSERT: the shutdown below must still run so that the callers end.
  EXPECT_EQ(seen->frames_entered.load(), 1) << "the first request never reached its handler";
  EXPECT_EQ(requests_in_flight(service->metrics()), 2) << "the second request never arrived";
  service->request_shutdown();
  service->wait();
  service.reset();
  for (auto& caller : callers) {
    caller.join();
  }

  EXPECT_EQ(seen->frames_unwound.load(), 1)
      << "the request holding the slot had entered its handler and must have unwound";
  EXPECT_EQ(seen->frames_unwound_after_registry.load(), 0)
      << "a handler frame outlived the service's metrics registry";
  EXPECT_TRUE(seen->registry_gone.load());
}

// An object of the caller's that a handler uses, declared after the Service as a main()
// declares what it serves with (frontend/main.cpp's Calculator): it is destroyed first.
struct Ledger {
  std::atomic<int> open{0};
};

// Lives in a handler's coroutine frame and writes to the ledger as the frame unwinds.
class LedgerEntry {
 public:
  explicit LedgerEntry(Ledger& ledger) : ledger_(ledger) { ++ledger_.open; }
  LedgerEntry(const LedgerEntry&) = delete;
  LedgerEntry& operator=(const LedgerEntry&) = delete;
  ~LedgerEntry() { --ledger_.open; }

 private:
  Ledger& ledger_;
};

// A handler deaf to the drain's cancellation (a driver whose wait ignores it) is still
// suspended when the pool stops. Its frame must be gone by the time wait() returns: the
// caller then destroys its own objects, which the frame refers to, before the Service.
// Before the fix the frame was destroyed only by ~Service, and its LedgerEntry wrote into
// the freed ledger (an ASan heap-use-after-free).
TEST(ShutdownLifetime, NoHandlerFrameOutlivesWaitWhatTheCallerDestroysNextIsSafe) {
  auto seen = std::make_shared<Observations>();
  auto service = std::make_unique<coromesh::Service>(
      coromesh::testing::in_process("deaf", coromesh::log::Level::error, 200ms));
  auto ledger = std::make_unique<Ledger>();
  service->route(coromesh::http::Verb::get, "/deaf", "deaf",
                 [seen, ledger = ledger.get()](
                     coromesh::http::RequestContext&) -> asio::awaitable<coromesh::http::Response> {
                   const FrameProbe probe(seen);
                   const LedgerEntry entry(*ledger);
                   asio::steady_timer timer(co_await asio::this_coro::executor, 10s);
                   co_await timer.async_wait(asio::bind_cancellation_slot(asio::cancellation_slot(),
                                                                          asio::use_awaitable));
                   co_return coromesh::http::make_text_response(coromesh::http::Status::ok, "late");
                 });
  service->start();
  const auto port = service->port();
  std::thread caller(
      [port] { coromesh::testing::http_fetch("127.0.0.1", port, "/deaf", {.timeout = 15s}); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (seen->frames_entered.load() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(seen->frames_entered.load(), 1) << "the request never reached its handler";
  service->request_shutdown();
  service->wait();
  EXPECT_EQ(seen->frames_unwound.load(), 1)
      << "wait() returned with a handler frame still suspended: it outlives whatever the "
         "caller destroys before the Service";
  EXPECT_EQ(ledger->open.load(), 0);
  ledger.reset();  // the caller's own objects go first, as they do leaving main()
  service.reset();
  caller.join();
}

// The value of the exposition line that starts with `series`, or "" when none does.
std::string value_of(const std::string& text, const std::string& series) {
  const auto at = text.find(series + " ");
  if (at == std::string::npos) {
    return "";
  }
  const auto from = at + series.size() + 1;
  return text.substr(from, text.find('\n', from) - from);
}

// A request the drain cuts off is cancelled, not failed: its own result in the call
// metrics, no failure of the breaker (it stays closed), no drop of the adaptive limit.
TEST(ShutdownLifetime, ARequestTheDrainCutsOffIsCountedCancelledAndHeldAgainstNoOne) {
  auto seen = std::make_shared<Observations>();
  auto service = std::make_unique<coromesh::Service>(
      coromesh::testing::in_process("napper", coromesh::log::Level::error, 200ms));
  service->serve(judged_nap, napper(seen));
  service->start();
  const auto port = service->port();
  std::thread caller([port] {
    coromesh::testing::http_fetch("127.0.0.1", port, "/api/v1/judged_nap?ms=10000",
                                  {.timeout = 15s});
  });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (seen->frames_entered.load() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(seen->frames_entered.load(), 1) << "the request never reached its handler";
  service->request_shutdown();
  service->wait();
  const std::string text = service->metrics().render();
  service.reset();
  caller.join();

  const std::string calls = R"(coromesh_qos_calls_total{operation="judged_nap",result=")";
  EXPECT_EQ(value_of(text, calls + R"(cancelled",side="server"})"), "1") << text;
  EXPECT_EQ(value_of(text, calls + R"(error",side="server"})"), "0");
  EXPECT_EQ(value_of(text, calls + R"(ok",side="server"})"), "0");
  EXPECT_EQ(value_of(text, R"(coromesh_qos_circuit_breaker_state{operation="judged_nap",)"
                           R"(side="server",state="closed"})"),
            "1");
  EXPECT_EQ(
      value_of(text, R"(coromesh_qos_concurrency_limit{operation="judged_nap",side="server"})"),
      "20");
}

}  // namespace
