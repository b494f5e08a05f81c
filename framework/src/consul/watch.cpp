#include "coromesh/consul/watch.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <utility>

#include "coromesh/log/logger.hpp"

namespace coromesh::consul {
namespace detail {
namespace {

constexpr std::chrono::milliseconds kProbationWait{1000};

}  // namespace

WatchLoop::WatchLoop(std::string name, const WatchOptions& options)
    : name_(std::move(name)),
      wait_(options.wait),
      backoff_(options.backoff_initial, options.backoff_max) {}

QueryOptions WatchLoop::next_query() const noexcept {
  return {.index = query_index_,
          .wait = probation_wait_ > std::chrono::milliseconds::zero() ? probation_wait_ : wait_};
}

WatchLoop::Verdict WatchLoop::accept(std::uint64_t index) {
  // Only an answered blocking query ends a failure streak. The query right after a
  // failure does not block and goes where any call goes: an agent that answers it but
  // fails every blocking query (one at its per-client connection limit refuses the new
  // connection a blocking query needs, with 429) would otherwise start a new streak at
  // the first backoff delay each time, retrying and logging at that pace forever.
  if (backoff_.failures() > 0 && query_index_ != 0) {
    log::info("consul.watch.recovered", {{"watch", name_}, {"failures", backoff_.failures()}});
    backoff_.reset();
  }
  if (probation_wait_ > std::chrono::milliseconds::zero()) {
    probation_wait_ *= 2;
    if (probation_wait_ >= wait_) {
      probation_wait_ = {};
    }
  }
  bool recovering = std::exchange(recovering_, false);
  disrupted_ = recovering;
  // An index of 0 would make the next query return at once, forever: Consul's docs say
  // to treat it as 1.
  index = std::max<std::uint64_t>(index, 1);
  bool news = index != delivered_;
  if (index < query_index_) {
    // Gone backwards: the agent restarted or a snapshot was restored. Start over with a
    // non-blocking query, as Consul's docs prescribe; this answer is current, so it is
    // still delivered.
    log::info("consul.watch.index_reset",
              {{"watch", name_}, {"from", query_index_}, {"to", index}});
    query_index_ = 0;
    disrupted_ = true;
  } else {
    query_index_ = index;
  }
  if (news) {
    delivered_ = index;
    return Verdict::news;
  }
  return recovering ? Verdict::compare : Verdict::old_news;
}

boost::asio::awaitable<void> WatchLoop::failed(std::string error) {
  // The agent may have restarted meanwhile, its index starting over below ours (or, in
  // dev mode, replaying to the very same number): a blocking query with an index from its
  // future would hang for the whole wait. So the first query after a failure does not
  // block, its answer is compared by value (see watch()), and the next queries block only
  // briefly at first (1s, doubling up to the configured wait): if the last answer before
  // the restart came from the dying agent, a short wait soon brings the new agent's lower
  // index, and Consul's backwards rule resets the watch.
  query_index_ = 0;
  probation_wait_ = std::min(kProbationWait, wait_);
  recovering_ = true;
  auto delay = backoff_.next();
  if (backoff_.failures() == 1) {
    log::warn("consul.watch.error", {{"watch", name_}, {"error", error}, {"retry_in", delay}});
  }
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, delay);
  co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
}

void WatchLoop::callback_failed() const noexcept {
  try {
    try {
      throw;
    } catch (const std::exception& e) {
      log::error("consul.watch.callback_failed", {{"watch", name_}, {"error", e.what()}});
    } catch (...) {
      log::error("consul.watch.callback_failed",
                 {{"watch", name_}, {"error", "unknown exception"}});
    }
  } catch (...) {
    // Out of memory even for the log line: the watch must go on regardless.
  }
}

}  // namespace detail

// The queries are built as named locals, not as lambdas inside the co_await expression:
// g++ 12 destroys a capturing lambda temporary there twice.

boost::asio::awaitable<void> watch_health_service(AgentClient& consul, std::string service,
                                                  bool passing_only, InstancesCallback on_change,
                                                  WatchOptions options) {
  WatchQuery<std::vector<ServiceInstance>> query = [&consul, service,
                                                    passing_only](QueryOptions next) {
    return consul.health_service(service, passing_only, next);
  };
  co_await watch(std::string("health:") + service, std::move(query), std::move(on_change), options);
}

boost::asio::awaitable<void> watch_health_service(
    AgentClient& consul, std::string service, bool passing_only,
    WatchCallback<std::vector<ServiceInstance>> on_change, WatchOptions options) {
  InstancesCallback deliver = [on_change = std::move(on_change)](
                                  const std::vector<ServiceInstance>& instances, WatchDelivery) {
    on_change(instances);
  };
  co_await watch_health_service(consul, std::move(service), passing_only, std::move(deliver),
                                options);
}

boost::asio::awaitable<void> watch_health_connect(AgentClient& consul, std::string service,
                                                  bool passing_only, InstancesCallback on_change,
                                                  WatchOptions options) {
  WatchQuery<std::vector<ServiceInstance>> query = [&consul, service,
                                                    passing_only](QueryOptions next) {
    return consul.health_connect(service, passing_only, next);
  };
  co_await watch(std::string("connect:") + service, std::move(query), std::move(on_change),
                 options);
}

boost::asio::awaitable<void> watch_kv(AgentClient& consul, std::string key,
                                      WatchCallback<std::optional<KvEntry>> on_change,
                                      WatchOptions options) {
  WatchQuery<std::optional<KvEntry>> query = [&consul, key](QueryOptions next) {
    return consul.kv_get(key, next);
  };
  co_await watch(std::string("kv:") + key, std::move(query), std::move(on_change), options);
}

boost::asio::awaitable<void> watch_kv_prefix(AgentClient& consul, std::string prefix,
                                             WatchCallback<std::vector<KvEntry>> on_change,
                                             WatchOptions options) {
  WatchQuery<std::vector<KvEntry>> query = [&consul, prefix](QueryOptions next) {
    return consul.kv_list(prefix, next);
  };
  co_await watch(std::string("kv:") + prefix, std::move(query), std::move(on_change), options);
}

}  // namespace coromesh::consul
