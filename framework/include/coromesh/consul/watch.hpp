#pragma once

// Blocking-query watches: a coroutine that keeps asking Consul "anything newer than
// index N?" and calls back only when the answer moved on.
//
//   boost::asio::cancellation_signal stop;
//   co_spawn(ex, consul::watch_health_service(agent, "add", true, on_endpoints),
//            bind_cancellation_slot(stop.slot(), detached));
//   ...
//   stop.emit(boost::asio::cancellation_type::terminal);  // at shutdown: ends promptly,
//                                                          // even mid blocking query
//
// Consul's rules are applied: the index is reset to 0 when it goes backwards (agent
// restart, snapshot restore) and treated as 1 if Consul ever answers 0. A failure may
// hide an agent restart, whose fresh index can lag ours or even equal it for different
// data. So an answer whose value differs from the last one delivered is delivered even
// at the same index (types without == are delivered once after each failure instead);
// after a failure the next query does not block and the following ones block only
// briefly at first (1s, doubling up to `wait`) so that an index from the new agent's
// future cannot hang the watch for the whole wait. Failures are
// retried with exponential backoff and jitter, logged once per failure streak
// (consul.watch.error) and once when it ends (consul.watch.recovered): when a blocking
// query is answered again, not the non-blocking one after each failure; a watch never
// gives up by itself. It ends only when cancelled (returning normally): an exception from
// the callback (any std::exception, std::bad_alloc included) is logged
// (consul.watch.callback_failed) and the watch goes on with the next change.
//
// A callback may also take a WatchDelivery, which says whether the answer is the first
// after a disruption (failed queries, or an index that went backwards): an agent that
// just restarted may answer before it knows again what it knew (a -dev agent, or one
// without persisted registrations, comes back empty), which a caller may want to treat
// with suspicion (connect::EndpointWatch does).
//
// Threading: runs on the AgentClient's executor; the callback is invoked there, inline:
// keep it short, or co_spawn the work it starts. `consul` must outlive the watch.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "coromesh/consul/agent_client.hpp"
#include "coromesh/consul/backoff.hpp"

namespace coromesh::consul {

struct WatchOptions {
  // How long Consul may hold each blocking query (it adds up to wait/16 of jitter).
  std::chrono::milliseconds wait = std::chrono::seconds(60);
  std::chrono::milliseconds backoff_initial = std::chrono::milliseconds(100);
  std::chrono::milliseconds backoff_max = std::chrono::seconds(5);
};

template <class T>
using WatchQuery = std::function<boost::asio::awaitable<QueryResult<T>>(QueryOptions)>;
template <class T>
using WatchCallback = std::function<void(const T&)>;

// What a callback is told about an answer besides its value.
struct WatchDelivery {
  // The first answer after failed queries, or one whose index went backwards: the agent
  // may have restarted and not have its registrations back yet.
  bool after_disruption = false;
};
template <class T>
using WatchDeliveryCallback = std::function<void(const T&, WatchDelivery)>;

namespace detail {

// The non-generic part of watch(): index bookkeeping, backoff and logging.
class WatchLoop {
 public:
  WatchLoop(std::string name, const WatchOptions& options);

  enum class Verdict : std::uint8_t {
    old_news,  // same index as the last delivered answer
    news,      // the index moved: deliver
    compare,   // same index, but the first answer after a failure: deliver if it differs
  };

  QueryOptions next_query() const noexcept;
  // Takes a successful answer's index and says whether the callback should see it.
  Verdict accept(std::uint64_t index);
  // Whether the answer accept() last took came right after a disruption (see WatchDelivery).
  bool disrupted() const noexcept { return disrupted_; }
  // After a failed query: logs if it starts a streak, then sleeps the backoff delay.
  boost::asio::awaitable<void> failed(std::string error);
  // The callback threw the exception being handled: logs it (never throws).
  void callback_failed() const noexcept;

 private:
  std::string name_;
  std::chrono::milliseconds wait_;
  Backoff backoff_;
  std::uint64_t query_index_ = 0;  // what the next query sends
  std::uint64_t delivered_ = 0;    // index of the last answer given to the callback
  // Non-zero after a failure: the shorter wait of the next blocking queries (see failed()).
  std::chrono::milliseconds probation_wait_{};
  bool recovering_ = false;  // the next answer is the first after a failure
  bool disrupted_ = false;   // the last accepted answer followed a failure or an index reset
};

inline bool cancelled(const boost::asio::cancellation_state& state) noexcept {
  return state.cancelled() != boost::asio::cancellation_type::none;
}

}  // namespace detail

// The generic loop; `name` appears in log lines ("health:add", "kv:config/add").
template <class T>
boost::asio::awaitable<void> watch(std::string name, WatchQuery<T> query,
                                   WatchDeliveryCallback<T> on_change, WatchOptions options = {}) {
  detail::WatchLoop loop(std::move(name), options);
  // The last value delivered, to tell after a failure whether a same-index answer is new.
  std::optional<T> last;
  // Every co_await result is bound to a local before it is tested: g++ 12 miscompiles
  // a co_await inside an if/switch condition expression.
  for (;;) {
    auto state = co_await boost::asio::this_coro::cancellation_state;
    if (detail::cancelled(state)) {
      co_return;
    }
    std::optional<QueryResult<T>> result;
    std::string error;
    try {
      result = co_await query(loop.next_query());
    } catch (const std::exception& e) {
      error = e.what();
    }
    state = co_await boost::asio::this_coro::cancellation_state;
    if (detail::cancelled(state)) {
      co_return;  // the failure, if any, was the cancellation itself
    }
    if (!result) {
      co_await loop.failed(std::move(error));
      continue;
    }
    // At an unchanged index the value is normally unchanged too; comparing anyway catches
    // the agent restart whose index replays to the number we hold (dev agents do).
    auto verdict = loop.accept(result->index);
    bool deliver = verdict == detail::WatchLoop::Verdict::news;
    if constexpr (std::equality_comparable<T>) {
      deliver = deliver || !last || !(*last == result->value);
    } else {
      deliver = deliver || verdict == detail::WatchLoop::Verdict::compare;
    }
    if (deliver) {
      if constexpr (std::equality_comparable<T>) {
        last = result->value;
      }
      // A callback that throws loses this change only, not the watch (the next change
      // is delivered as usual).
      try {
        on_change(result->value, WatchDelivery{.after_disruption = loop.disrupted()});
      } catch (...) {
        loop.callback_failed();
      }
    }
  }
}

// The same for a callback that only wants the value.
template <class T>
boost::asio::awaitable<void> watch(std::string name, WatchQuery<T> query,
                                   WatchCallback<T> on_change, WatchOptions options = {}) {
  WatchDeliveryCallback<T> deliver = [on_change = std::move(on_change)](
                                         const T& value, WatchDelivery) { on_change(value); };
  co_await watch(std::move(name), std::move(query), std::move(deliver), options);
}

using InstancesCallback = WatchDeliveryCallback<std::vector<ServiceInstance>>;

// GET /v1/health/service/<service>[?passing], blocking.
boost::asio::awaitable<void> watch_health_service(AgentClient& consul, std::string service,
                                                  bool passing_only, InstancesCallback on_change,
                                                  WatchOptions options = {});
boost::asio::awaitable<void> watch_health_service(
    AgentClient& consul, std::string service, bool passing_only,
    WatchCallback<std::vector<ServiceInstance>> on_change, WatchOptions options = {});

// GET /v1/health/connect/<service>[?passing], blocking: the sidecars in front of it.
boost::asio::awaitable<void> watch_health_connect(AgentClient& consul, std::string service,
                                                  bool passing_only, InstancesCallback on_change,
                                                  WatchOptions options = {});

// GET /v1/kv/<key>, blocking; the callback sees nullopt while the key does not exist.
boost::asio::awaitable<void> watch_kv(AgentClient& consul, std::string key,
                                      WatchCallback<std::optional<KvEntry>> on_change,
                                      WatchOptions options = {});
// Every key under `prefix` (GET /v1/kv/<prefix>?recurse), as one blocking query: called
// with all of them (empty when there is none) whenever any is written or deleted.
boost::asio::awaitable<void> watch_kv_prefix(AgentClient& consul, std::string prefix,
                                             WatchCallback<std::vector<KvEntry>> on_change,
                                             WatchOptions options = {});

}  // namespace coromesh::consul
