#pragma once

// The interceptor chain: the seed's `@QoS({@Interceptor(weight, type, properties)})` for
// C++20 coroutines.
//
// An Interceptor wraps the rest of the chain. Its `around(invocation, next)` coroutine is
// the three seed phases in one place:
//
//   request phase    code before `co_await next()`
//   response phase   code after `co_await next()` returned
//   fault phase      a `catch` around `co_await next()` (an exception — a failed call or a
//                    QosRejected thrown further in — is a fault)
//
// `next` may be called any number of times (retry calls it once per attempt) or not at
// all (a rejection), and a fault may be turned into a value (fallback sets the result).
// PhaseInterceptor gives the seed's explicit processRequest / processResponse /
// processFault methods for interceptors that only observe.
//
// Order: every interceptor has a weight, LOWEST weight OUTERMOST; ties keep declaration
// order (a stable sort). An interceptor built without an explicit weight takes its kind's
// default weight, which gives the default order
//
//   log(fallback(retry(circuit_breaker(rate_limit(timeout(bulkhead(adaptive_limit(
//       metrics(custom(call))))))))))
//
//   kind             default weight      kind             default weight
//   log              100                 timeout          600
//   fallback         200                 bulkhead         700
//   retry            300                 adaptive_limit   800
//   circuit_breaker  400                 metrics          900
//   rate_limit       500                 custom (user)    1000
//
// Metrics sits innermost so it times the call itself; policy rejections reach the
// rejection hook (coromesh_qos_rejections_total), not the call metrics.
//
// Rejections: a policy that refuses a call calls `invocation.reject(policy, reason)`,
// which runs the chain's `on_rejection(policy, reason)` hook (metrics attach there) and
// throws QosRejected.
//
//   Chain<int> chain({std::make_shared<Fallback<int>>(Fallback<int>::value(-1)),
//                     std::make_shared<TimeoutInterceptor>(100ms),
//                     std::make_shared<CircuitBreakerInterceptor>(breaker)},
//                    {.operation = "add"});
//   chain.on_rejection([](std::string_view policy, Reason r) { ... });
//   int v = co_await chain.execute(call);     // call: std::function<awaitable<int>()>
//
// Threading: a Chain may run any number of invocations at once, on any executors, as
// long as the policies it holds are thread-safe (all of qos/ are). Interceptors are
// shared (std::shared_ptr) and stateless per call; per-call state lives in Invocation.
// Set the rejection hook before the first execute(). The chain and its interceptors must
// outlive every invocation.

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "coromesh/qos/adaptive_limit.hpp"
#include "coromesh/qos/bulkhead.hpp"
#include "coromesh/qos/circuit_breaker.hpp"
#include "coromesh/qos/clock.hpp"
#include "coromesh/qos/deadline.hpp"
#include "coromesh/qos/rate_limiter.hpp"
#include "coromesh/qos/reason.hpp"
#include "coromesh/qos/remote_error.hpp"
#include "coromesh/qos/retry.hpp"

namespace coromesh::qos {

// Default weights per interceptor kind (see the table above).
namespace weights {
inline constexpr int log = 100;
inline constexpr int fallback = 200;
inline constexpr int retry = 300;
inline constexpr int circuit_breaker = 400;
inline constexpr int rate_limit = 500;
inline constexpr int timeout = 600;
inline constexpr int bulkhead = 700;
inline constexpr int adaptive_limit = 800;
inline constexpr int metrics = 900;
inline constexpr int custom = 1000;
}  // namespace weights

using RejectionHook = std::function<void(std::string_view policy, Reason reason)>;

class ChainCore;

// Per-call options given to Chain::execute.
struct CallOptions {
  Deadline deadline{};     // overall deadline of the call (timeouts never exceed it)
  bool idempotent = true;  // retry only retries idempotent calls unless told otherwise
};

// The state of one call travelling through the chain. Interceptors read it and write the
// attempt number; the typed result lives in TypedInvocation<R>.
class Invocation {
 public:
  Invocation(const ChainCore& core, CallOptions options) noexcept;
  virtual ~Invocation() = default;
  Invocation(const Invocation&) = delete;
  Invocation& operator=(const Invocation&) = delete;

  const std::string& operation() const noexcept;
  const Clock& clock() const noexcept;
  // The deadline the current attempt must meet: the earlier of the call's overall
  // deadline and the attempt's (set by a timeout). What a client stub sends downstream.
  Deadline deadline() const noexcept { return attempt_deadline_.min(options_.deadline); }
  const Deadline& overall_deadline() const noexcept { return options_.deadline; }
  void set_attempt_deadline(Deadline deadline) noexcept { attempt_deadline_ = deadline; }
  bool idempotent() const noexcept { return options_.idempotent; }

  // When the current run of request phases began, read once from the chain's clock so
  // that each synchronous interceptor need not read it again.
  Clock::time_point phase_time() const noexcept { return phase_time_; }
  void set_phase_time(Clock::time_point now) noexcept { phase_time_ = now; }

  // 1-based attempt number (retry sets it before each attempt).
  std::uint32_t attempt() const noexcept { return attempt_; }
  void set_attempt(std::uint32_t attempt) noexcept { attempt_ = attempt; }

  // Runs the chain's rejection hook, then throws QosRejected(policy, reason).
  [[noreturn]] void reject(std::string_view policy, Reason reason) const;

  virtual bool has_result() const noexcept = 0;
  virtual void clear_result() noexcept = 0;

 private:
  const ChainCore* core_;
  CallOptions options_;
  Deadline attempt_deadline_{};
  Clock::time_point phase_time_{};
  std::uint32_t attempt_ = 1;
};

template <class R>
class TypedInvocation final : public Invocation {
 public:
  using Invocation::Invocation;

  bool has_result() const noexcept override { return result_.has_value(); }
  void clear_result() noexcept override { result_.reset(); }
  void set_result(R value) { result_.emplace(std::move(value)); }
  // Precondition: has_result().
  R& result() { return *result_; }

 private:
  std::optional<R> result_;
};

// The rest of the chain after an interceptor. Cheap to copy; valid while the invocation
// runs. Each call runs the remaining interceptors and the call once more.
using Terminal = std::function<boost::asio::awaitable<void>(Invocation&)>;

class Next {
 public:
  boost::asio::awaitable<void> operator()() const;

 private:
  friend class ChainCore;
  Next(const ChainCore& core, std::size_t index, Invocation& invocation,
       const Terminal& terminal) noexcept
      : core_(&core), index_(index), invocation_(&invocation), terminal_(&terminal) {}

  const ChainCore* core_;
  std::size_t index_;
  Invocation* invocation_;
  const Terminal* terminal_;
};

class Interceptor {
 public:
  // `weight`: explicit weight, or nullopt for `default_weight`.
  Interceptor(std::string name, std::optional<int> weight, int default_weight)
      : name_(std::move(name)),
        weight_(weight.value_or(default_weight)),
        explicit_weight_(weight.has_value()) {}
  virtual ~Interceptor() = default;
  Interceptor(const Interceptor&) = delete;
  Interceptor& operator=(const Interceptor&) = delete;

  // The policy name: the `policy` label of rejections and log lines.
  const std::string& name() const noexcept { return name_; }
  int weight() const noexcept { return weight_; }
  bool has_explicit_weight() const noexcept { return explicit_weight_; }

  virtual boost::asio::awaitable<void> around(Invocation& invocation, Next next) = 0;

  // True for a SynchronousInterceptor whose phases the chain may call directly.
  virtual bool synchronous() const noexcept { return false; }

 private:
  std::string name_;
  int weight_;
  bool explicit_weight_;
};

struct Fault;

// What the rest of the chain came to, as a synchronous interceptor's outcome phase sees it.
struct Outcome {
  Duration elapsed;    // how long the rest of the chain took (chain's clock)
  const Fault* fault;  // nullptr on success

  bool ok() const noexcept { return fault == nullptr; }
};

// An interceptor that never suspends: an admission check in the request phase, a
// bookkeeping step in the outcome phase. The chain runs a run of adjacent synchronous
// interceptors inside one coroutine frame around the rest of the chain, so they cost a
// function call each instead of a coroutine each (most of the built-in policies are
// synchronous; see ChainCore). Semantics are exactly those of the nested form: the
// interceptors' request phases run outermost first, their outcome phases innermost
// first, and only interceptors whose request phase admitted the call see an outcome.
class SynchronousInterceptor : public Interceptor {
 public:
  using Interceptor::Interceptor;

  bool synchronous() const noexcept override { return true; }

  // Request phase: returns to admit, calls invocation.reject() to refuse.
  virtual void on_request(Invocation& invocation) = 0;
  // Outcome phase: success or fault of the rest of the chain. Must not throw (an
  // observer cannot change the outcome).
  virtual void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept = 0;

  // The nested form of the same phases (used when run outside a chain segment).
  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override;
};

// The seed's three explicit phases, for interceptors that observe. The request phase runs
// before the rest of the chain (and may reject), the response phase after it succeeded,
// the fault phase when it threw (the exception then continues outwards unchanged). An
// exception thrown by the response or fault phase is logged and dropped: an observer
// cannot change the outcome.
class PhaseInterceptor : public SynchronousInterceptor {
 public:
  explicit PhaseInterceptor(std::string name, std::optional<int> weight = std::nullopt)
      : SynchronousInterceptor(std::move(name), weight, weights::custom) {}

  virtual void process_request(Invocation& /*invocation*/) {}
  virtual void process_response(Invocation& /*invocation*/) {}
  virtual void process_fault(Invocation& /*invocation*/, const std::exception_ptr& /*fault*/) {}

  void on_request(Invocation& invocation) final { process_request(invocation); }
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept final;
};

// What a fault was: the exception, and when it was a QosRejected, its policy and reason.
struct Fault {
  std::exception_ptr error;
  std::optional<Reason> reason;  // set for a QosRejected
  std::string policy;            // the rejecting policy for a QosRejected
  std::string message;           // what() of a std::exception, else "unknown exception"
  unsigned status = 0;           // the HTTP status of a RemoteError or HttpError
  bool cancelled = false;        // a system_error with asio::error::operation_aborted

  // A fault that says nothing about the callee's health: cancellation, a local overload
  // rejection (rate_limited, bulkhead_full, concurrency_limited) or the caller's own
  // error (a 4xx answer).
  bool is_neutral() const noexcept;

  static Fault from(std::exception_ptr error);
};

// ---------------------------------------------------------------------------------------
// Adapters over the policy primitives. Each takes the policy by shared_ptr (policies are
// shared by every call of an operation and are not copyable) and an optional weight.

enum class TimeoutMode : std::uint8_t {
  // The rest of the chain races a timer and is cancelled when the timer wins (about
  // 1 us per call: a timer and a spawned coroutine).
  preemptive,
  // The timeout only sets the attempt's deadline, which every coromesh await honours
  // (client stubs send it downstream and stop waiting at it, retry backoffs and
  // bulkhead queues end at it); nothing else is cancelled. As cheap as a clock read.
  deadline,
};

// Per-attempt timeout, bounded by the invocation's overall deadline (its remaining time
// read on the chain's clock). Either way the attempt's deadline is set for the call to
// read (Invocation::deadline()) and an already expired deadline rejects without calling.
//
// Preemptive: the rest of the chain races a real asio steady_timer; when the timer wins
// the rest is cancelled through Asio per-operation cancellation and the attempt is
// rejected with deadline_exceeded. The call must honour cancellation (a call that
// ignores it is waited for, then rejected). A call that completes first, with a value or
// an exception, cancels the timer at once.
class TimeoutInterceptor final : public SynchronousInterceptor {
 public:
  explicit TimeoutInterceptor(Duration per_attempt, std::optional<int> weight = std::nullopt,
                              std::string name = "timeout",
                              TimeoutMode mode = TimeoutMode::preemptive);
  Duration per_attempt() const noexcept { return per_attempt_; }
  TimeoutMode mode() const noexcept { return mode_; }

  bool synchronous() const noexcept override { return mode_ == TimeoutMode::deadline; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;
  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override;

 private:
  // Rejects with deadline_exceeded when the attempt could not even start.
  Deadline attempt_deadline(Invocation& invocation, Clock::time_point now) const;

  Duration per_attempt_;
  TimeoutMode mode_;
};

struct RetryOptions {
  std::shared_ptr<RetryBudget> budget{};  // optional; a refused retry -> budget_exhausted
  std::uint64_t seed = 0x5eed;            // jitter RNG seed (deterministic tests)
  // Retry an attempt rejected with deadline_exceeded (a per-attempt timeout further in,
  // Envoy's per_try_timeout); other rejections are never retried.
  bool retry_attempt_timeouts = true;
};

// Calls the rest of the chain up to max_attempts times while RetryPolicy::should_retry
// says so, waiting the jittered backoff on an asio timer between attempts. Each original
// call deposits into the budget; each retry asks it. A retry is not started when its
// backoff would end past the overall deadline: the last fault is rethrown instead.
class RetryInterceptor final : public Interceptor {
 public:
  explicit RetryInterceptor(RetryConfig config, RetryOptions options = {},
                            std::optional<int> weight = std::nullopt, std::string name = "retry");
  const RetryPolicy& policy() const noexcept { return policy_; }
  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override;

 private:
  bool retryable(const Fault& fault, std::uint32_t attempts, bool idempotent) const;
  Duration next_backoff(std::uint32_t retry);

  RetryPolicy policy_;
  RetryOptions options_;
  std::mutex rng_mutex_;
  std::mt19937_64 rng_;
};

// acquire() before, on_success / on_failure with the duration measured on the chain's
// clock after. Faults count as failures, except rejections for local overload
// (rate_limited, bulkhead_full, concurrency_limited), cancellation and a caller's error
// (a 4xx RemoteError or http::HttpError), which give the permit back without recording
// (they say nothing about the callee's health).
class CircuitBreakerInterceptor final : public SynchronousInterceptor {
 public:
  explicit CircuitBreakerInterceptor(std::shared_ptr<CircuitBreaker> breaker,
                                     std::optional<int> weight = std::nullopt,
                                     std::string name = "circuit_breaker");
  CircuitBreaker& breaker() const noexcept { return *breaker_; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;

 private:
  std::shared_ptr<CircuitBreaker> breaker_;
};

// try_acquire() on a token or leaky bucket; rejected with rate_limited.
//
// With a leaky bucket and `shape`, it is the seed's queue drained at a fixed rate: an
// admitted call waits its turn (LeakyBucket::try_schedule) on an asio timer so calls
// leave at exactly the bucket's rate, a full bucket rejects, and a call whose turn would
// come after its deadline is rejected with deadline_exceeded at once instead of waiting.
class RateLimitInterceptor final : public SynchronousInterceptor {
 public:
  explicit RateLimitInterceptor(std::shared_ptr<TokenBucket> bucket,
                                std::optional<int> weight = std::nullopt,
                                std::string name = "rate_limit");
  explicit RateLimitInterceptor(std::shared_ptr<LeakyBucket> bucket,
                                std::optional<int> weight = std::nullopt,
                                std::string name = "rate_limit", bool shape = false);
  bool synchronous() const noexcept override { return !shape_; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation&, const Outcome&) noexcept override {}
  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override;

 private:
  std::variant<std::shared_ptr<TokenBucket>, std::shared_ptr<LeakyBucket>> bucket_;
  bool shape_ = false;
};

// Holds a Bulkhead slot around the rest of the chain; rejected with bulkhead_full.
// Without a wait queue it is synchronous (try_enter / leave); with one, acquire() may
// wait in the queue (never past the invocation's deadline).
class BulkheadInterceptor final : public SynchronousInterceptor {
 public:
  explicit BulkheadInterceptor(std::shared_ptr<Bulkhead> bulkhead,
                               std::optional<int> weight = std::nullopt,
                               std::string name = "bulkhead");
  Bulkhead& bulkhead() const noexcept { return *bulkhead_; }
  bool synchronous() const noexcept override { return bulkhead_->config().max_queue == 0; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;
  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override;

 private:
  std::shared_ptr<Bulkhead> bulkhead_;
};

// AdaptiveLimit::acquire() before (concurrency_limited), on_sample(latency, ok) after;
// cancellation, local overload and a caller's error call release().
class AdaptiveLimitInterceptor final : public SynchronousInterceptor {
 public:
  explicit AdaptiveLimitInterceptor(std::shared_ptr<AdaptiveLimit> limit,
                                    std::optional<int> weight = std::nullopt,
                                    std::string name = "adaptive_limit");
  AdaptiveLimit& limit() const noexcept { return *limit_; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;

 private:
  std::shared_ptr<AdaptiveLimit> limit_;
};

// One line at entry (debug) and one at exit: `qos.call` with operation, attempt count,
// duration, outcome (ok / rejected / error), and policy+reason or the error message.
// Exit lines are info for ok, warn for a fault.
class LogInterceptor final : public SynchronousInterceptor {
 public:
  explicit LogInterceptor(std::optional<int> weight = std::nullopt, std::string name = "log");
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;
};

// Where MetricsInterceptor reports each call (the metrics module implements it with
// Prometheus families; qos/ itself knows no metrics library). Called on io threads,
// concurrently.
class CallObserver {
 public:
  enum class Result : std::uint8_t { ok, error, rejected };
  virtual ~CallObserver() = default;
  virtual void observe(Result result, Duration elapsed) noexcept = 0;
};

// Reports every call's result and duration to a CallObserver.
class MetricsInterceptor final : public SynchronousInterceptor {
 public:
  explicit MetricsInterceptor(std::shared_ptr<CallObserver> observer,
                              std::optional<int> weight = std::nullopt,
                              std::string name = "metrics");
  void on_request(Invocation&) override {}
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;

 private:
  std::shared_ptr<CallObserver> observer_;
};

// Which faults a Fallback turns into a value.
struct FallbackFilter {
  bool rejections = true;         // QosRejected (any reason unless `reasons` is set)
  bool errors = true;             // any other exception
  std::vector<Reason> reasons{};  // empty: every reason
};

// Turns a fault of the rest of the chain into a value: `fn(fault)` or a static value.
// Faults outside the filter, and an exception thrown by `fn`, continue outwards.
template <class R>
class Fallback final : public Interceptor {
 public:
  using Function = std::function<R(const Fault&)>;

  explicit Fallback(Function fn, FallbackFilter filter = {},
                    std::optional<int> weight = std::nullopt, std::string name = "fallback")
      : Interceptor(std::move(name), weight, weights::fallback),
        fn_(std::move(fn)),
        filter_(std::move(filter)) {}

  // A fallback function that always answers `value`.
  static Function value(R value) {
    return [v = std::move(value)](const Fault&) { return v; };
  }

  bool applies(const Fault& fault) const {
    if (!fault.reason) {
      return filter_.errors;
    }
    if (!filter_.rejections) {
      return false;
    }
    if (filter_.reasons.empty()) {
      return true;
    }
    for (Reason r : filter_.reasons) {
      if (r == *fault.reason) {
        return true;
      }
    }
    return false;
  }

  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override {
    auto* typed = dynamic_cast<TypedInvocation<R>*>(&invocation);
    if (typed == nullptr) {
      throw std::logic_error("qos fallback: result type does not match the chain's");
    }
    std::exception_ptr error;
    try {
      co_await next();
      co_return;
    } catch (...) {
      error = std::current_exception();
    }
    Fault fault = Fault::from(error);
    if (!applies(fault)) {
      std::rethrow_exception(error);
    }
    typed->set_result(fn_(fault));
  }

 private:
  Function fn_;
  FallbackFilter filter_;
};

// ---------------------------------------------------------------------------------------

struct ChainOptions {
  std::string operation = "operation";  // for log lines and the rejection hook's users
  const Clock* clock = nullptr;         // measures durations; nullptr: Clock::steady()
};

// The untyped chain: ordered interceptors, the rejection hook, and the runner.
class ChainCore {
 public:
  // Sorts by weight (stable: ties keep declaration order). Throws std::invalid_argument
  // for a null interceptor.
  explicit ChainCore(std::vector<std::shared_ptr<Interceptor>> interceptors,
                     ChainOptions options = {});

  ChainCore(const ChainCore&) = delete;
  ChainCore& operator=(const ChainCore&) = delete;

  // Interceptors outermost first.
  const std::vector<std::shared_ptr<Interceptor>>& interceptors() const noexcept {
    return interceptors_;
  }
  // Their names, outermost first.
  std::vector<std::string> order() const;

  void on_rejection(RejectionHook hook) { hook_ = std::move(hook); }
  void notify_rejection(std::string_view policy, Reason reason) const;

  const std::string& operation() const noexcept { return options_.operation; }
  const Clock& clock() const noexcept { return *options_.clock; }

  // Runs interceptors [index, end) and then `terminal`.
  boost::asio::awaitable<void> run_from(std::size_t index, Invocation& invocation,
                                        const Terminal& terminal) const;

 private:
  // Runs the synchronous interceptors [begin, segment_end_[begin]) around the rest.
  boost::asio::awaitable<void> run_segment(std::size_t begin, Invocation& invocation,
                                           const Terminal& terminal) const;

  std::vector<std::shared_ptr<Interceptor>> interceptors_;
  // For a synchronous interceptor at i: the cast pointer, and the index just past the
  // run of synchronous interceptors it starts. nullptr / unused for the others.
  std::vector<SynchronousInterceptor*> synchronous_;
  std::vector<std::size_t> segment_end_;
  ChainOptions options_;
  RejectionHook hook_;
};

// The typed chain of one operation returning R (not void; use a unit type for none).
template <class R>
class Chain {
  static_assert(!std::is_void_v<R>, "Chain<void>: use an empty struct as the result");

 public:
  using Call = std::function<boost::asio::awaitable<R>()>;

  explicit Chain(std::vector<std::shared_ptr<Interceptor>> interceptors, ChainOptions options = {})
      : core_(std::move(interceptors), std::move(options)) {}

  void on_rejection(RejectionHook hook) { core_.on_rejection(std::move(hook)); }
  std::vector<std::string> order() const { return core_.order(); }
  const ChainCore& core() const noexcept { return core_; }

  // Runs `call` through the chain. Returns the call's (or a fallback's) result; throws
  // QosRejected on a rejection nobody turned into a value, or the call's exception.
  boost::asio::awaitable<R> execute(Call call, CallOptions options = {}) const {
    return run(std::move(call), options);
  }

  // The same, for a call that reads the invocation: its deadline (the attempt's, what a
  // client sends downstream) and attempt number.
  using InvocationCall = std::function<boost::asio::awaitable<R>(const Invocation&)>;
  boost::asio::awaitable<R> execute_with(InvocationCall call, CallOptions options = {}) const {
    return run(std::move(call), options);
  }

 private:
  template <class F>
  boost::asio::awaitable<R> run(F call, CallOptions options) const {
    TypedInvocation<R> invocation(core_, options);
    const Terminal terminal = [&call](Invocation& inv) { return invoke(call, inv); };
    co_await core_.run_from(0, invocation, terminal);
    if (!invocation.has_result()) {
      throw std::logic_error("qos chain: an interceptor completed without calling next");
    }
    co_return std::move(invocation.result());
  }

  template <class F>
  static boost::asio::awaitable<void> invoke(const F& call, Invocation& inv) {
    auto& typed = static_cast<TypedInvocation<R>&>(inv);
    typed.clear_result();
    std::optional<R> value;
    if constexpr (std::is_invocable_v<const F&, const Invocation&>) {
      value.emplace(co_await call(inv));
    } else {
      value.emplace(co_await call());
    }
    typed.set_result(std::move(*value));
  }

  ChainCore core_;
};

}  // namespace coromesh::qos
