#include "coromesh/connect/load_balancer.hpp"

#include <algorithm>
#include <atomic>
#include <boost/container/small_vector.hpp>
#include <cmath>
#include <limits>
#include <mutex>
#include <random>
#include <unordered_map>

#include "coromesh/connect/atomic_snapshot.hpp"
#include "coromesh/log/logger.hpp"

namespace coromesh::connect {

std::string_view to_string(BalancePolicy policy) noexcept {
  switch (policy) {
    case BalancePolicy::round_robin:
      return "round_robin";
    case BalancePolicy::least_request:
      return "least_request";
    case BalancePolicy::p2c_ewma:
      return "p2c_ewma";
  }
  return "unknown";
}

bool parse_balance_policy(std::string_view text, BalancePolicy& out) noexcept {
  for (auto policy :
       {BalancePolicy::round_robin, BalancePolicy::least_request, BalancePolicy::p2c_ewma}) {
    if (to_string(policy) == text) {
      out = policy;
      return true;
    }
  }
  return false;
}

namespace detail {

// One endpoint's counters and estimates. Every field is atomic: picks and outcomes on
// any thread update it without a lock.
struct EndpointState {
  explicit EndpointState(std::string endpoint_key) : key(std::move(endpoint_key)) {}

  const std::string key;
  std::atomic<std::uint32_t> in_flight{0};
  std::atomic<std::uint64_t> picks{0};
  std::atomic<std::uint64_t> successes{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint32_t> consecutive_failures{0};
  // Clock time in ns (qos::Clock's epoch); 0: never.
  std::atomic<std::int64_t> ejected_until{0};
  std::atomic<std::uint32_t> ejections{0};
  // Peak EWMA of latency in ns, and when it last took a sample (0: never measured).
  std::atomic<double> latency_ns{0};
  std::atomic<std::int64_t> latency_stamp{0};
};

// A snapshot with each endpoint's state beside it, in the same order.
struct SnapshotIndex {
  std::shared_ptr<const EndpointSet> source;
  std::vector<std::shared_ptr<EndpointState>> states;
};

namespace {

// What an endpoint never measured costs while it has a call in flight: more than any
// measured one, so that it gets one probe at a time (Finagle's "penalty").
constexpr double kUnmeasuredBusyCost = std::numeric_limits<double>::max() / 2;

std::uint64_t mix(std::uint64_t z) noexcept {  // SplitMix64's finalizer
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31U);
}

}  // namespace

struct BalancerCore {
  explicit BalancerCore(LoadBalancerOptions opts)
      : options(opts),
        decay_ns(static_cast<double>(std::chrono::nanoseconds(opts.ewma_decay).count())),
        random_state(opts.seed != 0 ? opts.seed : std::random_device{}()) {
    if (decay_ns <= 0) {
      decay_ns = 1;
    }
  }

  std::int64_t now() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               options.clock->now().time_since_epoch())
        .count();
  }

  // A SplitMix64 stream over an atomic counter: lock-free, and reproducible from the
  // seed when one thread picks.
  std::uint64_t random() noexcept {
    return mix(random_state.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed) +
               0x9e3779b97f4a7c15ULL);
  }

  double latency_estimate(const EndpointState& state, std::int64_t at) const noexcept {
    auto stamp = state.latency_stamp.load(std::memory_order_relaxed);
    if (stamp == 0) {
      return 0;
    }
    auto idle = static_cast<double>(std::max<std::int64_t>(at - stamp, 0));
    return state.latency_ns.load(std::memory_order_relaxed) * std::exp(-idle / decay_ns);
  }

  double cost(const EndpointState& state, std::int64_t at) const noexcept {
    auto in_flight = state.in_flight.load(std::memory_order_relaxed);
    if (state.latency_stamp.load(std::memory_order_relaxed) == 0) {
      return in_flight == 0 ? 0 : kUnmeasuredBusyCost;
    }
    return latency_estimate(state, at) * (static_cast<double>(in_flight) + 1);
  }

  void observe_latency(EndpointState& state, std::chrono::nanoseconds latency, std::int64_t at) {
    auto sample = static_cast<double>(std::max<std::int64_t>(latency.count(), 0));
    auto previous = state.latency_stamp.exchange(at, std::memory_order_relaxed);
    // The weight of the old estimate shrinks with the time since the last sample; the
    // first sample (previous == 0) replaces it outright.
    double keep =
        previous == 0
            ? 0
            : std::exp(-static_cast<double>(std::max<std::int64_t>(at - previous, 0)) / decay_ns);
    double current = state.latency_ns.load(std::memory_order_relaxed);
    for (;;) {
      double decayed = current * keep;
      double next = sample > decayed ? sample : decayed + sample * (1 - keep);
      if (state.latency_ns.compare_exchange_weak(current, next, std::memory_order_relaxed)) {
        return;
      }
    }
  }

  std::shared_ptr<const SnapshotIndex> index_for(
      const std::shared_ptr<const EndpointSet>& snapshot) {
    auto current = index.load();
    if (current && current->source == snapshot) {
      return current;  // the hot path: the snapshot every pick() passes until it changes
    }
    std::lock_guard lock(index_mutex);
    current = index.load();
    if (current && current->source == snapshot) {
      return current;
    }
    std::unordered_map<std::string_view, std::shared_ptr<EndpointState>> known;
    if (current) {
      for (const auto& state : current->states) {
        known.emplace(state->key, state);
      }
    }
    auto built = std::make_shared<SnapshotIndex>();
    built->source = snapshot;
    built->states.reserve(snapshot->size());
    for (const auto& endpoint : snapshot->endpoints) {
      auto it = known.find(endpoint.key);
      built->states.push_back(it != known.end() ? it->second
                                                : std::make_shared<EndpointState>(endpoint.key));
    }
    // A reader may still pass an older snapshot than the current one: serve it with the
    // states it shares with the current one, but do not make it current (that would
    // forget the endpoints only the newer one has).
    if (!current || snapshot->generation >= current->source->generation) {
      index.store(built);
    }
    return built;
  }

  void finish(EndpointState& state, std::chrono::nanoseconds latency, Outcome outcome) {
    auto at = now();
    if (outcome != Outcome::connect_failure && options.policy == BalancePolicy::p2c_ewma) {
      observe_latency(state, latency, at);
    }
    if (outcome == Outcome::success) {
      state.successes.fetch_add(1, std::memory_order_relaxed);
      state.consecutive_failures.store(0, std::memory_order_relaxed);
    } else {
      state.failures.fetch_add(1, std::memory_order_relaxed);
      if (state.ejected_until.load(std::memory_order_relaxed) > at) {
        // A call that was already out when the endpoint was ejected (or one sent while
        // every endpoint is ejected): it says nothing new, and must not shorten the next
        // streak.
        state.in_flight.fetch_sub(1, std::memory_order_relaxed);
        return;
      }
      auto streak = state.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
      auto threshold = options.ejection.consecutive_failures;
      if (threshold != 0 && streak >= threshold) {
        maybe_eject(state, at);
      }
    }
    // Last: until here a concurrent least_request pick still counts this call.
    state.in_flight.fetch_sub(1, std::memory_order_relaxed);
  }

  void maybe_eject(EndpointState& state, std::int64_t at) {
    const auto& rules = options.ejection;
    std::lock_guard lock(ejection_mutex);
    if (state.consecutive_failures.load(std::memory_order_relaxed) < rules.consecutive_failures ||
        state.ejected_until.load(std::memory_order_relaxed) > at) {
      return;  // another thread's failure ejected it already
    }
    auto current = index.load();
    if (!current) {
      return;
    }
    std::size_t ejected = 0;
    bool member = false;
    for (const auto& other : current->states) {
      member = member || other.get() == &state;
      ejected += other->ejected_until.load(std::memory_order_relaxed) > at ? 1U : 0U;
    }
    if (!member) {
      return;  // it left the set: forgotten anyway
    }
    auto total = current->states.size();
    if (ejected * 100 >= std::size_t{rules.max_ejection_percent} * total) {
      // Too many are out already; the streak stays, so its next failure asks again.
      return;
    }
    auto max_ns = std::chrono::nanoseconds(rules.max_ejection_time).count();
    auto last_end = state.ejected_until.load(std::memory_order_relaxed);
    if (last_end != 0 && at - last_end > max_ns) {
      state.ejections.store(0, std::memory_order_relaxed);  // long well-behaved: start over
    }
    auto times = state.ejections.fetch_add(1, std::memory_order_relaxed) + 1;
    auto duration =
        std::min(std::chrono::nanoseconds(rules.base_ejection_time).count() * times, max_ns);
    state.ejected_until.store(at + duration, std::memory_order_relaxed);
    state.consecutive_failures.store(0, std::memory_order_relaxed);
    try {
      // Rate-limited per endpoint: a flapping set under load must not flood the log.
      log::warn_limited("connect.endpoint.ejected", state.key,
                        {{"service", current->source->service},
                         {"endpoint", state.key},
                         {"ejections", times},
                         {"for", std::chrono::nanoseconds(duration)}});
    } catch (...) {  // done() is noexcept: a lost log line is not worth a crash
    }
  }

  const LoadBalancerOptions options;
  double decay_ns;
  AtomicSnapshot<SnapshotIndex> index;
  std::mutex index_mutex;     // building a new index (once per snapshot)
  std::mutex ejection_mutex;  // ejection decisions (count, then eject)
  std::atomic<std::uint64_t> rotation{0};
  std::atomic<std::uint64_t> random_state;
};

}  // namespace detail

// ---- Pick ------------------------------------------------------------------------------

Pick::Pick() noexcept = default;
Pick::Pick(Pick&&) noexcept = default;

Pick& Pick::operator=(Pick&& other) noexcept {
  if (this != &other) {
    release();
    endpoint_ = std::move(other.endpoint_);
    state_ = std::move(other.state_);
    core_ = std::move(other.core_);
  }
  return *this;
}

Pick::~Pick() {
  release();
}

Pick::Pick(std::shared_ptr<const Endpoint> endpoint, std::shared_ptr<detail::EndpointState> state,
           std::shared_ptr<detail::BalancerCore> core) noexcept
    : endpoint_(std::move(endpoint)), state_(std::move(state)), core_(std::move(core)) {}

void Pick::release() noexcept {
  if (state_) {
    state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  endpoint_.reset();
  state_.reset();
  core_.reset();
}

void Pick::done(std::chrono::nanoseconds latency, Outcome outcome) noexcept {
  if (!state_) {
    return;
  }
  core_->finish(*state_, latency, outcome);
  state_.reset();  // finish() left the in-flight count: release() must not again
  release();
}

// ---- LoadBalancer ----------------------------------------------------------------------

LoadBalancer::LoadBalancer(LoadBalancerOptions options)
    : core_(std::make_shared<detail::BalancerCore>(options)) {}

LoadBalancer::~LoadBalancer() = default;

BalancePolicy LoadBalancer::policy() const noexcept {
  return core_->options.policy;
}

void LoadBalancer::update(const std::shared_ptr<const EndpointSet>& snapshot) {
  if (snapshot) {
    core_->index_for(snapshot);
  }
}

Pick LoadBalancer::pick(const std::shared_ptr<const EndpointSet>& snapshot,
                        std::span<const std::string> excluding) {
  if (!snapshot || snapshot->empty()) {
    return {};
  }
  auto& core = *core_;
  auto index = core.index_for(snapshot);
  auto at = core.now();

  // The candidates: not excluded, and not ejected unless all of those are. Each
  // endpoint's ejection is read once, so a concurrent ejection cannot empty the list.
  boost::container::small_vector<std::uint32_t, 16> allowed;
  boost::container::small_vector<std::uint32_t, 16> healthy;
  for (std::uint32_t i = 0; i < snapshot->size(); ++i) {
    const auto& key = snapshot->endpoints[i].key;
    if (std::find(excluding.begin(), excluding.end(), key) != excluding.end()) {
      continue;
    }
    allowed.push_back(i);
    if (index->states[i]->ejected_until.load(std::memory_order_relaxed) <= at) {
      healthy.push_back(i);
    }
  }
  if (allowed.empty()) {
    return {};
  }
  const auto& candidates = healthy.empty() ? allowed : healthy;

  std::uint32_t chosen = candidates[0];
  auto count = candidates.size();
  switch (core.options.policy) {
    case BalancePolicy::round_robin:
      chosen = candidates[core.rotation.fetch_add(1, std::memory_order_relaxed) % count];
      break;
    case BalancePolicy::least_request: {
      // The fewest in flight; the scan starts at a rotating offset so ties take turns.
      auto start = core.rotation.fetch_add(1, std::memory_order_relaxed) % count;
      auto fewest = std::numeric_limits<std::uint32_t>::max();
      for (std::size_t n = 0; n < count; ++n) {
        auto i = candidates[(start + n) % count];
        auto in_flight = index->states[i]->in_flight.load(std::memory_order_relaxed);
        if (in_flight < fewest) {
          fewest = in_flight;
          chosen = i;
        }
      }
      break;
    }
    case BalancePolicy::p2c_ewma:
      if (count > 1) {
        auto first = core.random() % count;
        auto second = core.random() % (count - 1);
        second += second >= first ? 1 : 0;  // two distinct candidates
        const auto& a = *index->states[candidates[first]];
        const auto& b = *index->states[candidates[second]];
        auto cost_a = core.cost(a, at);
        auto cost_b = core.cost(b, at);
        bool take_b = cost_b < cost_a ||
                      (cost_b == cost_a && b.in_flight.load(std::memory_order_relaxed) <
                                               a.in_flight.load(std::memory_order_relaxed));
        chosen = candidates[take_b ? second : first];
      }
      break;
  }

  auto state = index->states[chosen];
  state->in_flight.fetch_add(1, std::memory_order_relaxed);
  state->picks.fetch_add(1, std::memory_order_relaxed);
  return Pick(std::shared_ptr<const Endpoint>(snapshot, &snapshot->endpoints[chosen]),
              std::move(state), core_);
}

std::vector<EndpointStats> LoadBalancer::endpoint_stats() const {
  std::vector<EndpointStats> stats;
  auto index = core_->index.load();
  if (!index) {
    return stats;
  }
  auto at = core_->now();
  stats.reserve(index->states.size());
  for (std::size_t i = 0; i < index->states.size(); ++i) {
    const auto& endpoint = index->source->endpoints[i];
    const auto& state = *index->states[i];
    stats.push_back(EndpointStats{
        .key = endpoint.key,
        .address = endpoint.address,
        .port = endpoint.port,
        .in_flight = state.in_flight.load(std::memory_order_relaxed),
        .picks = state.picks.load(std::memory_order_relaxed),
        .successes = state.successes.load(std::memory_order_relaxed),
        .failures = state.failures.load(std::memory_order_relaxed),
        .ejected = state.ejected_until.load(std::memory_order_relaxed) > at,
        .ejections = state.ejections.load(std::memory_order_relaxed),
        .latency_estimate =
            std::chrono::nanoseconds(static_cast<std::int64_t>(core_->latency_estimate(state, at))),
    });
  }
  return stats;
}

}  // namespace coromesh::connect
