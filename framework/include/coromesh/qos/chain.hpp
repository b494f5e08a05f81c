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
// The adapters that put each policy into a chain live next to their policy:
// timeout_interceptor.hpp, retry_interceptor.hpp, circuit_breaker_interceptor.hpp,
// rate_limit_interceptor.hpp, bulkhead_interceptor.hpp, adaptive_limit_interceptor.hpp,
// log_interceptor.hpp, metrics_interceptor.hpp and fallback.hpp (interceptors.hpp
// includes them all).
//
// Threading: a Chain may run any number of invocations at once, on any executors, as
// long as the policies it holds are thread-safe (all of qos/ are). Interceptors are
// shared (std::shared_ptr) and stateless per call; per-call state lives in Invocation.
// Set the rejection hook before the first execute(). The chain and its interceptors must
// outlive every invocation.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "coromesh/qos/cancellable_call.hpp"
#include "coromesh/qos/clock.hpp"
#include "coromesh/qos/deadline.hpp"
#include "coromesh/qos/fault.hpp"
#include "coromesh/qos/reason.hpp"

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
class WatchedDeadline;

// Per-call options given to Chain::execute.
struct CallOptions {
  Deadline deadline{};     // overall deadline of the call (timeouts never exceed it)
  bool idempotent = true;  // retry only retries idempotent calls unless told otherwise
};

// The requests sent on behalf of one call that must not be sent twice (non-idempotent
// calls its code made through typed clients): while any is marked, no retry runs the call
// again. Counted, each mark taken back when its request is known never to have left (its
// connect failed): one that did leave, or may still, keeps the call unrepeatable whatever
// the others came to. Shared by the call and the requests, which may outlive it.
class UnrepeatableMarks {
 public:
  // As a request goes out (before its connect: a retry may decide while it is in flight).
  void mark() noexcept { count_.fetch_add(1, std::memory_order_relaxed); }
  // Takes back one mark() whose request never left.
  void unmark_unsent() noexcept { count_.fetch_sub(1, std::memory_order_relaxed); }
  bool any() const noexcept { return count_.load(std::memory_order_relaxed) > 0; }

 private:
  std::atomic<std::uint32_t> count_{0};
};

// The state of one call travelling through the chain. Interceptors read it and write the
// attempt number; the typed result lives in TypedInvocation<R>.
class Invocation {
 public:
  Invocation(const ChainCore& core, CallOptions options) noexcept
      : core_(&core), options_(options) {}
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

  // The code behind this call has sent a request downstream that must not be sent twice
  // (a non-idempotent call through a typed client, which marks it): no retry may run the
  // call again, whatever its own method or its retry's idempotent_only say. Const: the
  // served operation's code holds the invocation as const (CallContext::invocation).
  void mark_unrepeatable() const noexcept { unrepeatable_.store(true, std::memory_order_relaxed); }
  bool unrepeatable() const noexcept {
    if (unrepeatable_.load(std::memory_order_relaxed)) {
      return true;
    }
    const UnrepeatableMarks* marks = marks_.load(std::memory_order_acquire);
    return marks != nullptr && marks->any();
  }
  // The same for the requests the code behind this call sends through typed clients, each
  // marked as it goes out and unmarked if it never left (UnrepeatableMarks). Created on
  // first use; shared, so that a call outliving this invocation (one its code detached)
  // marks nothing freed. Take it before the call starts (OperationClient::execute does).
  std::shared_ptr<UnrepeatableMarks> unrepeatable_marks() const;

  // When the current run of request phases began, read once from the chain's clock so
  // that each synchronous interceptor need not read it again.
  Clock::time_point phase_time() const noexcept { return phase_time_; }
  void set_phase_time(Clock::time_point now) noexcept { phase_time_ = now; }

  // 1-based attempt number (retry sets it before each attempt).
  std::uint32_t attempt() const noexcept { return attempt_; }
  void set_attempt(std::uint32_t attempt) noexcept { attempt_ = attempt; }

  // Runs the chain's rejection hook, then throws QosRejected(policy, reason), marked as
  // told to this chain's hook (QosRejected::notified_by).
  [[noreturn]] void reject(std::string_view policy, Reason reason) const;
  // Runs the chain's rejection hook only: for a policy that declines to do more for a call
  // (a retry its budget refuses) and lets the call end with the fault it already has.
  void note_refusal(std::string_view policy, Reason reason) const;
  // The same for a preemptive timeout that has cut the running call off at its deadline:
  // throws QosRejected::cut_off_by(policy) (deadline_exceeded, a timeout: fault.hpp).
  [[noreturn]] void cut_off(std::string_view policy) const;

  // The fault `error` is, classified once by the chain's classifier: the same exception
  // seen again further out (it travels through every interceptor) is not classified
  // again. A cancellation once the attempt's preemptive timeout has fired is a timeout.
  const Fault& fault(const std::exception_ptr& error);
  // Whether `fault` is a refusal this chain's rejection hook was already told of (by
  // reject() or cut_off()): an observer outside the refusing policy must not count it
  // again.
  bool notified(const Fault& fault) const noexcept { return fault.notified_by == core_; }

  // The preemptive timeout's watch over the rest of the chain, set by the chain segment
  // that runs the rest under it for as long as it does (null: none); returns the one it
  // replaces, for the segment to put back. The watch is read when a fault is classified,
  // so the cut-off is a timeout for every interceptor that sees it first, those in later
  // segments (past an asynchronous interceptor such as a queued bulkhead) included.
  const WatchedDeadline* set_cutoff_watch(const WatchedDeadline* watch) noexcept {
    return std::exchange(cutoff_watch_, watch);
  }

  // A fallback turned `fault` into the call's value: the interceptors outside it see a
  // success, but the log line must not call it the callee's (LogInterceptor says
  // outcome=fallback with this fault). Null when no fallback answered.
  void set_fallback_fault(const Fault& fault) { fallback_fault_ = fault; }
  const Fault* fallback_fault() const noexcept {
    return fallback_fault_ ? &*fallback_fault_ : nullptr;
  }

  virtual bool has_result() const noexcept = 0;
  virtual void clear_result() noexcept = 0;

 private:
  const ChainCore* core_;
  CallOptions options_;
  Deadline attempt_deadline_{};
  Clock::time_point phase_time_{};
  std::uint32_t attempt_ = 1;
  const WatchedDeadline* cutoff_watch_ = nullptr;
  std::optional<Fault> last_fault_;
  std::optional<Fault> fallback_fault_;
  // Atomic: the marking call may run as a preemptive timeout's child coroutine.
  mutable std::atomic<bool> unrepeatable_{false};
  // unrepeatable_marks(): made once; marks_ is published after marks_owner_ is set.
  mutable std::once_flag marks_made_;
  mutable std::shared_ptr<UnrepeatableMarks> marks_owner_;
  mutable std::atomic<const UnrepeatableMarks*> marks_{nullptr};
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

// Throws operation_aborted once `state` (the coroutine's about to start the call) has
// been cancelled: a call whose caller has given up does not start. It matters where the
// caller's coroutine handles its cancellation itself (throw_if_cancelled(false), as the
// HTTP server's connections do): a call queued in a bulkhead, cut off by a drain just
// before the slot was handed to it, would otherwise resume with its permit and run.
void refuse_if_cancelled(const boost::asio::cancellation_state& state);

// The call at the end of the chain, type-erased by Chain<R>: `run(call, invocation)`
// runs it once and stores its result in the invocation; `start_cancellable` does the
// same as the child of `child` (CancellableCall::start_entry), in one coroutine frame
// instead of two. Points at the call, which lives in the Chain<R>::run frame for the
// whole invocation.
struct Terminal {
  boost::asio::awaitable<void> (*run)(const void* call, Invocation& invocation);
  void (*start_cancellable)(const void* call, Invocation& invocation, CancellableCall& child,
                            boost::asio::cancellation_slot slot);
  const void* call;

  boost::asio::awaitable<void> operator()(Invocation& invocation) const {
    return run(call, invocation);
  }
};

// The rest of the chain after an interceptor. Cheap to copy; valid while the invocation
// runs. Each call runs the remaining interceptors and the call once more.

class Next {
 public:
  boost::asio::awaitable<void> operator()() const;
  // The same, for an interceptor that has just read the chain's clock (Invocation::clock)
  // and not suspended since: the rest of the chain takes `now` as the time it starts
  // instead of reading the clock again. Passing a time read before a suspension would
  // misstate every duration and deadline measured from it.
  boost::asio::awaitable<void> starting_at(Clock::time_point now) const;

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

// An interceptor that runs the rest of the chain once per attempt until an attempt
// succeeds or it declines another: retry. Its decisions are synchronous hooks, so that
// the chain can run its attempts in the frame of the synchronous segment that follows it
// (ChainCore::run_segment: one coroutine frame and one dispatch less per call, the
// attempts looping there only after a fault). around() is the same loop in the nested
// form, for when no synchronous interceptor follows; both run exactly these steps:
//
//   now = on_call(invocation)                   once, before the first attempt
//   for attempt = 1, 2, ...:
//     invocation.set_attempt(attempt)
//     the rest of the chain (attempt 1 starting at `now` if set: Next::starting_at)
//     success: done
//     backoff = on_attempt_fault(invocation, error, attempt)
//     none: the call ends with `error`; else wait_backoff(backoff)
class RetryingInterceptor : public Interceptor {
 public:
  using Interceptor::Interceptor;

  // The call's request phase, before its first attempt. Returns the time it read from
  // the chain's clock (Invocation::clock) with no suspension since, if it read one: the
  // first attempt starts at that time instead of reading the clock again.
  virtual std::optional<Clock::time_point> on_call(Invocation& invocation) = 0;
  // Attempt `attempt` (1-based) ended with `error` (the rest's outcome phases have run):
  // the backoff to wait before the next attempt, or nullopt to end the call with `error`.
  virtual std::optional<Duration> on_attempt_fault(Invocation& invocation,
                                                   const std::exception_ptr& error,
                                                   std::uint32_t attempt) = 0;

  // Waits `backoff` on the calling coroutine's executor (a timer; the caller's
  // cancellation ends it). Nothing for a zero backoff.
  static boost::asio::awaitable<void> wait_backoff(Duration backoff);

  boost::asio::awaitable<void> around(Invocation& invocation, Next next) final;
};

// What the rest of the chain came to, as a synchronous interceptor's outcome phase sees it.
struct Outcome {
  Duration elapsed;         // how long the rest of the chain took (chain's clock)
  const Fault* fault;       // nullptr on success
  Clock::time_point ended;  // when it ended (the chain's clock, read once for both)

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

  // True for an interceptor that cuts the rest of the chain off at the deadline its
  // request phase set (Invocation::deadline()): the preemptive timeout. The chain then
  // runs the rest as a cancellable child coroutine watched by the io_context's
  // DeadlineWatchdog; once that deadline passes the rest is cancelled, the interceptors
  // inside this one see the rest's own outcome (the cancellation), and this one and those
  // outside it see QosRejected(this->name(), deadline_exceeded). A rest that had finished
  // before the cancellation reached it (its waiter not yet resumed) keeps its outcome.
  virtual bool preempts() const noexcept { return false; }

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

// ---------------------------------------------------------------------------------------

struct ChainOptions {
  std::string operation = "operation";  // for log lines and the rejection hook's users
  const Clock* clock = nullptr;         // measures durations; nullptr: Clock::steady()
  // Says whose fault a fault is (fault.hpp); nullptr: classify_fault, which knows no HTTP.
  FaultClassifier classify = nullptr;
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
  // Whether the retrying interceptor at `index` (outermost first) runs its attempts in
  // the frame of the synchronous segment after it rather than in its own (for tests).
  bool attempts_in_segment(std::size_t index) const noexcept {
    return index < retrying_.size() && retrying_[index] != nullptr;
  }

  void on_rejection(RejectionHook hook) { hook_ = std::move(hook); }
  void notify_rejection(std::string_view policy, Reason reason) const;

  const std::string& operation() const noexcept { return options_.operation; }
  const Clock& clock() const noexcept { return *options_.clock; }
  FaultClassifier classifier() const noexcept { return options_.classify; }

  // Runs interceptors [index, end) and then `terminal`. `now`: the chain's clock read by
  // the caller with no suspension since (see Next::starting_at), or nullopt.
  boost::asio::awaitable<void> run_from(std::size_t index, Invocation& invocation,
                                        const Terminal& terminal,
                                        std::optional<Clock::time_point> now = std::nullopt) const;

 private:
  // `when` on the chain's clock as a steady_clock time (`now`: the chain clock's now).
  std::chrono::steady_clock::time_point steady_time(Clock::time_point when,
                                                    Clock::time_point now) const;
  // Runs the synchronous interceptors [begin, segment_end_[begin]) around the rest;
  // with `retry` (the retrying interceptor just before them), once per attempt it makes.
  boost::asio::awaitable<void> run_segment(std::size_t begin, Invocation& invocation,
                                           const Terminal& terminal,
                                           std::optional<Clock::time_point> now,
                                           RetryingInterceptor* retry) const;

  std::vector<std::shared_ptr<Interceptor>> interceptors_;
  // For a synchronous interceptor at i: the cast pointer, and the index just past the
  // run of synchronous interceptors it starts. nullptr / unused for the others.
  std::vector<SynchronousInterceptor*> synchronous_;
  std::vector<std::size_t> segment_end_;
  std::vector<std::uint8_t> preempts_;  // synchronous_[i]->preempts(), read once
  // For a retrying interceptor at i followed by a synchronous one: the cast pointer (its
  // attempts run in the segment at i + 1). nullptr for the others.
  std::vector<RetryingInterceptor*> retrying_;
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
    const Terminal terminal{&invoke_erased<F>, &start_cancellable<F>, &call};
    co_await core_.run_from(0, invocation, terminal);
    if (!invocation.has_result()) {
      throw std::logic_error("qos chain: an interceptor completed without calling next");
    }
    co_return std::move(invocation.result());
  }

  template <class F>
  static boost::asio::awaitable<void> invoke_erased(const void* call, Invocation& inv) {
    return invoke(*static_cast<const F*>(call), inv);
  }

  template <class F>
  static boost::asio::awaitable<void> invoke(const F& call, Invocation& inv) {
    refuse_if_cancelled(co_await boost::asio::this_coro::cancellation_state);
    auto& typed = static_cast<TypedInvocation<R>&>(inv);
    typed.clear_result();
    typed.set_result(co_await start_call(call, inv));
  }

  template <class F>
  static boost::asio::awaitable<R> start_call(const F& call, const Invocation& inv) {
    if constexpr (std::is_invocable_v<const F&, const Invocation&>) {
      return call(inv);
    } else {
      return call();
    }
  }

  template <class F>
  static void start_cancellable(const void* call, Invocation& inv, CancellableCall& child,
                                boost::asio::cancellation_slot slot) {
    child.start_entry(cancellable_entry(*static_cast<const F*>(call), inv, &child), slot);
  }

  // invoke() as the bottom frame of a CancellableCall's child.
  template <class F>
  static CancellableCall::Entry cancellable_entry(const F& call, Invocation& inv,
                                                  CancellableCall* child) {
    CancellableCall::Link link(child);
    std::exception_ptr error;
    try {
      auto& typed = static_cast<TypedInvocation<R>&>(inv);
      typed.clear_result();
      typed.set_result(co_await start_call(call, inv));
    } catch (...) {
      error = std::current_exception();
    }
    link.finish(std::move(error));
  }

  ChainCore core_;
};

}  // namespace coromesh::qos
