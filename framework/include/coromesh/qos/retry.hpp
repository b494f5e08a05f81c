#pragma once

// Retry policy and retry budget.
//
// RetryConfig says how often and how long to wait: at most `max_attempts` attempts (the
// first call included), the n-th retry (n = 1, 2, ...) waits a backoff drawn from
//   nominal(n) = min(max_backoff, base_backoff * multiplier^(n-1))
//   Jitter::full  -> uniform [0, nominal]            (AWS "full jitter"; Envoy's choice)
//   Jitter::equal -> nominal/2 + uniform [0, nominal/2]
//   Jitter::none  -> nominal
// Defaults: 3 attempts (resilience4j maxAttempts), base 25 ms, cap 250 ms (Envoy's retry
// back-off: 25 ms base, 10x max), multiplier 2, full jitter, retry on 502/503/504 (Envoy's
// "gateway-error") and on transport errors, idempotent requests only, except a failure
// whose request never reached the callee (Fault::not_delivered: the retry interceptor
// sends that one again whatever the method). The retryable statuses are 5xx only:
// validate() refuses a 4xx (the caller's error, or 429 the callee's refusal: never
// retried, qos/fault.hpp) rather than let it sit in the set doing nothing.
//
// The RNG is the caller's (`std::mt19937_64` seeded as the test pleases), so backoffs are
// deterministic under test. RetryConfig is an immutable literal type: share it freely and
// validate it in a static_assert.
//
// RetryBudget (Linkerd / Finagle style) caps retries across all requests of a client:
// over a sliding `ttl` window, retries are allowed while
//   retries < min_retries_per_second * ttl_seconds + ratio * requests.
// Defaults (Linkerd): ratio 0.2, min 10 retries per second, ttl 10 s. A retry the budget
// refuses is an Admission rejected with Reason::budget_exhausted (the retry interceptor
// then ends the call with its last attempt's fault). Thread-safe: a mutex guards the window's
// retries and its sliding; a request is counted without it (a per-thread relaxed counter
// in the current bucket) unless it is the first of a new bucket, and at a time the
// caller read already when it has one (the retry interceptor hands down the time it
// read for the chain), so counting requests costs no clock read and no lock.
//
// A live override of the budget's fields builds a successor that inherits the window
// (see the second constructor); its geometry cannot change in place, since requests are
// counted without the lock.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <mutex>
#include <random>
#include <string_view>
#include <vector>

#include "coromesh/qos/clock.hpp"
#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

enum class Jitter : std::uint8_t { none, full, equal };

// A set of HTTP status codes 100..599 as a literal bit set.
class StatusSet {
 public:
  constexpr StatusSet() noexcept = default;
  constexpr StatusSet(std::initializer_list<unsigned> statuses) noexcept {
    for (unsigned s : statuses) {
      insert(s);
    }
  }
  constexpr void insert(unsigned status) noexcept {
    if (status < kSize) {
      bits_[status / 64] |= std::uint64_t{1} << (status % 64);
    }
  }
  constexpr bool contains(unsigned status) const noexcept {
    return status < kSize && (bits_[status / 64] >> (status % 64) & 1U) != 0;
  }
  friend constexpr bool operator==(const StatusSet&, const StatusSet&) = default;

 private:
  static constexpr unsigned kSize = 640;
  std::array<std::uint64_t, kSize / 64> bits_{};
};

struct RetryConfig {
  std::uint32_t max_attempts = 3;
  Duration base_backoff = std::chrono::milliseconds(25);
  Duration max_backoff = std::chrono::milliseconds(250);
  double multiplier = 2.0;
  Jitter jitter = Jitter::full;
  StatusSet retryable_statuses{502, 503, 504};
  bool retry_transport_errors = true;
  bool idempotent_only = true;
  // Optional: decides for an exception the call threw (nullptr: retry_transport_errors
  // decides for every exception except QosRejected, which is never retried).
  bool (*retryable_exception)(const std::exception&) noexcept = nullptr;
};

// The backoff before retry `n` (1-based) without jitter.
constexpr Duration nominal_backoff(const RetryConfig& c, std::uint32_t n) noexcept {
  double ns = static_cast<double>(c.base_backoff.count());
  const auto cap = static_cast<double>(c.max_backoff.count());
  for (std::uint32_t i = 1; i < n && ns < cap && ns > 0 && c.multiplier > 1.0; ++i) {
    ns *= c.multiplier;
  }
  return Duration(static_cast<Duration::rep>(ns < cap ? ns : cap));
}

// The shortest total wait all retries of one call can add up to (jitter at its minimum).
constexpr Duration min_total_backoff(const RetryConfig& c) noexcept {
  Duration total{0};
  for (std::uint32_t n = 1; n < c.max_attempts; ++n) {
    const auto nominal = nominal_backoff(c, n);
    total += c.jitter == Jitter::none    ? nominal
             : c.jitter == Jitter::equal ? nominal / 2
                                         : Duration::zero();
  }
  return total;
}

// The longest total wait all retries of one call can add up to.
constexpr Duration max_total_backoff(const RetryConfig& c) noexcept {
  Duration total{0};
  for (std::uint32_t n = 1; n < c.max_attempts; ++n) {
    total += nominal_backoff(c, n);
  }
  return total;
}

constexpr std::string_view validate(const RetryConfig& c) noexcept {
  if (c.max_attempts == 0) {
    return "retry: max_attempts must be at least 1 (the first call counts)";
  }
  if (c.max_attempts > 100) {
    return "retry: max_attempts above 100 is a retry storm";
  }
  if (c.base_backoff < Duration::zero() || c.max_backoff < Duration::zero()) {
    return "retry: backoffs must not be negative";
  }
  if (c.max_backoff < c.base_backoff) {
    return "retry: max_backoff is below base_backoff";
  }
  if (!(c.multiplier >= 1.0 && c.multiplier <= 100.0)) {
    return "retry: multiplier must be in [1, 100]";
  }
  // Only a callee's 5xx is a retryable status (qos/fault.hpp's table): listing another
  // would look like a policy and never act, so it is refused where it is written.
  if (c.retryable_statuses.contains(429)) {
    return "retry: retry_on lists 429, which is never retried: a callee's 429 is its "
           "refusal (its rate limit), and retrying at once only adds to its overload; "
           "declare a fallback for it instead";
  }
  for (unsigned status = 100; status < 640; ++status) {
    if ((status < 500 || status > 599) && c.retryable_statuses.contains(status)) {
      return "retry: retry_on may list only 5xx statuses (a 4xx is the caller's own error "
             "and is never retried, and a 1xx-3xx is no failure)";
    }
  }
  return {};
}

// Whether all attempts can fit in `overall_timeout`, each allowed `per_attempt_timeout`
// (zero: no per-attempt timeout). Fails when the per-attempt timeout exceeds the overall
// one, or when the waits between attempts alone can use up the overall timeout, so that
// the last declared attempts could never run.
constexpr std::string_view validate(const RetryConfig& c, Duration overall_timeout,
                                    Duration per_attempt_timeout = Duration::zero()) noexcept {
  if (auto error = validate(c); !error.empty()) {
    return error;
  }
  if (overall_timeout <= Duration::zero()) {
    return "retry: the overall timeout must be positive";
  }
  if (per_attempt_timeout < Duration::zero()) {
    return "retry: the per-attempt timeout must not be negative";
  }
  if (per_attempt_timeout > overall_timeout) {
    return "retry: the per-attempt timeout exceeds the overall timeout";
  }
  if (c.max_attempts > 1 && max_total_backoff(c) >= overall_timeout) {
    return "retry: the backoffs between attempts can use up the whole overall timeout, so "
           "the last attempts cannot fit";
  }
  return {};
}

// Throws std::invalid_argument with validate()'s message (prefixed by `name`).
void check(const RetryConfig& config, Duration overall_timeout = Duration::zero(),
           Duration per_attempt_timeout = Duration::zero(), std::string_view name = "retry");

class RetryPolicy {
 public:
  // Throws std::invalid_argument when validate(config) is not empty.
  explicit RetryPolicy(RetryConfig config = {});

  const RetryConfig& config() const noexcept { return config_; }

  // The wait before retry `n` (1-based), jittered with `rng`.
  Duration backoff(std::uint32_t n, std::mt19937_64& rng) const;

  // Whether a call that made `attempts_made` attempts and ended with HTTP `status` (or
  // threw `error`) may be tried again. `idempotent` is the request's (GET, PUT, DELETE...).
  // Neither knows whether the request reached the callee: the retry interceptor, which
  // does (Fault::not_delivered), decides through fault.hpp's table, not through these.
  bool should_retry(std::uint32_t attempts_made, unsigned status, bool idempotent) const noexcept;
  bool should_retry(std::uint32_t attempts_made, const std::exception& error,
                    bool idempotent) const noexcept;

 private:
  RetryConfig config_;
};

struct RetryBudgetConfig {
  double ratio = 0.2;
  std::uint32_t min_retries_per_second = 10;
  Duration ttl = std::chrono::seconds(10);
  std::uint32_t buckets = 10;

  friend constexpr bool operator==(const RetryBudgetConfig&, const RetryBudgetConfig&) = default;
};

constexpr std::string_view validate(const RetryBudgetConfig& c) noexcept {
  if (!(c.ratio >= 0.0 && c.ratio <= 1000.0)) {
    return "retry budget: ratio must be in [0, 1000]";
  }
  if (c.ttl < std::chrono::milliseconds(1)) {
    return "retry budget: ttl must be at least 1 ms";
  }
  if (c.buckets == 0 || c.buckets > 1000) {
    return "retry budget: buckets must be in [1, 1000]";
  }
  return {};
}

class RetryBudget {
 public:
  // Throws std::invalid_argument when validate(config) is not empty.
  explicit RetryBudget(RetryBudgetConfig config = {}, const Clock& clock = Clock::steady());
  // The successor of `predecessor` under a new configuration (a live override of the
  // budget's fields), on its clock: the retries spent and the requests seen in its window
  // are carried over with their times, so that they count against the new allowance and
  // leave the window when the new ttl says (at the new buckets' granularity). A spent
  // budget stays spent unless the new allowance is larger: the balance is the new
  // allowance less the retries already made, never below zero, never a fresh budget.
  // What the predecessor counts after this is not carried (calls still in flight on it).
  RetryBudget(RetryBudgetConfig config, RetryBudget& predecessor);

  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // Every original request (not retries) deposits into the budget.
  void on_request();
  // The same at `now`, a time the caller just read from clock() (saves a read).
  void on_request(Clock::time_point now);
  // Asks to retry once; rejected with Reason::budget_exhausted when the budget is spent.
  Admission try_retry();

  // Retries still allowed right now.
  std::uint64_t available();
  const RetryBudgetConfig& config() const noexcept { return config_; }
  const Clock& clock() const noexcept { return *clock_; }

 private:
  // One slice of the window. `epoch` is written under mutex_ only, but read without it
  // by on_request's fast path; `retries` is mutex_'s.
  struct Bucket {
    std::atomic<std::int64_t> epoch{-1};  // -1: empty
    std::uint64_t retries = 0;
  };
  // The requests of each bucket, per thread shard: shard s counts bucket b in
  // request_lines_[s * lines_per_shard_ + b / kPerLine].count[b % kPerLine]. Relaxed
  // increments; zeroed under mutex_ before the bucket's epoch is published.
  static constexpr std::size_t kShards = 8;
  static constexpr std::size_t kPerLine = 8;
  struct alignas(64) RequestLine {
    std::array<std::atomic<std::uint64_t>, kPerLine> count{};
  };

  std::int64_t epoch_of(Clock::time_point now) const noexcept;
  std::atomic<std::uint64_t>& requests_of(std::size_t shard, std::size_t bucket) noexcept;
  std::uint64_t requests_in(std::size_t bucket) const noexcept;
  void reset_locked(std::size_t bucket, std::int64_t epoch) noexcept;
  // Slides the window to `now` and returns the current bucket's index.
  std::size_t current_locked(Clock::time_point now);
  double allowance() const;

  RetryBudgetConfig config_;
  const Clock* clock_;
  Clock::time_point origin_;
  Duration::rep bucket_width_;  // ns, at least 1
  // The bucket of the last request counted, as epoch << 16 | index (index < 1000), so
  // that the next one in the same bucket skips two divisions. A hint: checked against
  // the time before use, and left alone past epoch 2^47.
  std::atomic<std::uint64_t> current_hint_{0};
  std::mutex mutex_;
  std::vector<Bucket> buckets_;
  std::size_t lines_per_shard_;
  std::vector<RequestLine> request_lines_;
};

}  // namespace coromesh::qos
