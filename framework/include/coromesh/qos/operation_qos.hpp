#pragma once

// The QoS of one side of one declared operation while it runs: the chain built from the
// declaration, swapped whole when a live override arrives.
//
//   OperationQos<std::int64_t> qos("add", qos::to_policy_set(list), fallback, options, hook);
//   std::int64_t v = co_await qos.execute(call, {.deadline = incoming});
//   qos.apply(qos::apply_override(qos.declared(), kv_document));   // any thread
//
// A call runs on the chain that was current when it started, so a swap never disturbs
// calls in flight. Policy objects whose declaration is unchanged move
// to the new chain (build_policies), so an override of one policy resets no other state. A
// circuit breaker, rate limiter, bulkhead or adaptive limit the override changes moves too,
// reconfigured in place: an open breaker stays open, spent tokens stay spent, and the
// calls in flight on the old chain count against a new concurrency limit.
//
// Threads: execute() from any number of threads; apply() from any thread. The chain and
// its objects are immutable once published. The hot path reads the current chain with
// one atomic pointer load and no reference counting: a replaced chain is retired, not
// freed, until the OperationQos goes (overrides are rare, a chain is a few hundred
// bytes, and a call in flight on it needs no other guard).

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/fallback.hpp"
#include "coromesh/qos/policies.hpp"
#include "coromesh/qos/policy_runtime.hpp"

namespace coromesh::qos {

// Compile-time check that a `qos::fallback{handler}` can answer for result R: a
// function R(const Fault&), or a value converting to R. A mismatch fails a
// static_assert that names the fix; otherwise (and after that error) it returns true.
// COROMESH_OPERATION runs it at the declaration, make_fallback again where it is built.
template <class R, class T>
consteval bool check_fallback() {
  if constexpr (std::is_same_v<T, const char*> &&
                !std::is_invocable_r_v<R, const T&, const Fault&> &&
                !std::is_convertible_v<const T&, R>) {
    static_assert(!std::is_same_v<T, const char*>,
                  "qos::fallback: a string literal is not this operation's result type; use a "
                  "function R(const qos::Fault&) that builds the result, e.g. "
                  "qos::fallback{+[](const qos::Fault&) { return R{...}; }}");
  } else if constexpr (!std::is_invocable_r_v<R, const T&, const Fault&>) {
    static_assert(std::is_convertible_v<const T&, R>,
                  "qos::fallback: the value must convert to the operation's result type, or "
                  "be a function R(const qos::Fault&)");
  }
  return true;
}

// check_fallback for the fallback of a declared list, if it has one.
template <class R, class P>
consteval bool check_if_fallback() {
  if constexpr (is_fallback<P>::value) {
    return check_fallback<R, decltype(P::handler)>();
  } else {
    return true;
  }
}
template <class R, Side S, class... Ps>
consteval bool check_fallbacks(const PolicyList<S, Ps...>*) {
  return (check_if_fallback<R, Ps>() && ...);
}

// Checks a fallback's value before it becomes the call's result, throwing what the call
// then fails with (the server side: a value its answer cannot carry, http::check_serializable).
template <class R>
using FallbackValueCheck = void (*)(const R&);

// The typed fallback interceptor a `qos::fallback{...}` declaration stands for. A value
// `check` refuses is the fallback's own failure: its exception continues outwards as the
// call's fault, as any exception of the fallback's function does (fallback.hpp), so the
// metrics, the log and the answer all see that failure, not a fallback answer.
template <class R, class T>
std::shared_ptr<Interceptor> make_fallback(const fallback<T>& declared,
                                           FallbackValueCheck<R> check = nullptr) {
  FallbackFilter filter{.rejections = declared.on_rejections, .errors = declared.on_errors};
  for (Reason reason : kAllReasons) {
    if (declared.reasons.contains(reason)) {
      filter.reasons.push_back(reason);
    }
  }
  std::optional<int> weight =
      declared.weight == 0 ? std::nullopt : std::optional<int>(declared.weight);
  if constexpr (std::is_invocable_r_v<R, const T&, const Fault&>) {
    return std::make_shared<Fallback<R>>(
        [fn = declared.handler, check](const Fault& fault) {
          R value = fn(fault);
          if (check != nullptr) {
            check(value);
          }
          return value;
        },
        filter, weight);
  } else if constexpr (std::is_convertible_v<const T&, R>) {
    R value(declared.handler);
    if (check != nullptr) {
      check(value);  // a static value: refused where the operation is served, at start-up
    }
    return std::make_shared<Fallback<R>>(Fallback<R>::value(std::move(value)), filter, weight);
  } else {
    static_assert(check_fallback<R, T>());  // fails inside with the message
    return nullptr;
  }
}

// The fallback of a declared list, or nullptr.
template <class R, Side S, class... Ps>
std::shared_ptr<Interceptor> fallback_of(const PolicyList<S, Ps...>& list,
                                         FallbackValueCheck<R> check = nullptr) {
  std::shared_ptr<Interceptor> result;
  std::apply(
      [&result, check](const auto&... p) {
        [[maybe_unused]] auto one = [&result, check](const auto& policy) {
          if constexpr (is_fallback<std::remove_cvref_t<decltype(policy)>>::value) {
            result = make_fallback<R>(policy, check);
          }
        };
        (one(p), ...);
      },
      list.policies);
  return result;
}

template <class R>
class OperationQos {
 public:
  using Call = typename Chain<R>::Call;

  // Throws std::invalid_argument when `declared` cannot work.
  OperationQos(std::string operation, PolicySet declared, std::shared_ptr<Interceptor> fallback,
               BuildOptions options, RejectionHook on_rejection)
      : operation_(std::move(operation)),
        declared_(declared),
        fallback_(std::move(fallback)),
        options_(std::move(options)),
        on_rejection_(std::move(on_rejection)) {
    publish(build(declared_, nullptr));
  }

  OperationQos(const OperationQos&) = delete;
  OperationQos& operator=(const OperationQos&) = delete;

  // The caller's deadline in `options` is bounded by the declared overall timeout.
  boost::asio::awaitable<R> execute(Call call, CallOptions options = {}) const {
    const State& state = *current_.load(std::memory_order_acquire);
    return state.chain.execute(std::move(call), state.bounded(options));
  }
  boost::asio::awaitable<R> execute_with(typename Chain<R>::InvocationCall call,
                                         CallOptions options = {}) const {
    const State& state = *current_.load(std::memory_order_acquire);
    return state.chain.execute_with(std::move(call), state.bounded(options));
  }

  // Replaces the running policies by `set`; throws std::invalid_argument (and keeps the
  // running ones) when it cannot work. The running set again changes nothing and publishes
  // no chain: a KV watch wakes on every write of its key, and a tool that writes the same
  // override over and over must not grow the retired chains without bound.
  void apply(const PolicySet& set) {
    const std::lock_guard lock(apply_mutex_);
    const State* running = current_.load();
    if (running->objects->spec == set) {
      return;
    }
    publish(build(set, running->objects.get()));
  }

  const std::string& operation() const noexcept { return operation_; }
  const PolicySet& declared() const noexcept { return declared_; }
  PolicySet current() const { return current_.load()->objects->spec; }
  // How many chains were ever published (1 + the overrides applied).
  std::size_t generations() const {
    const std::lock_guard lock(apply_mutex_);
    return states_.size();
  }
  // The running objects (breaker state, limits...), for metrics and tests.
  std::shared_ptr<const PolicyObjects> objects() const { return current_.load()->objects; }
  std::vector<std::string> order() const { return current_.load()->chain.order(); }

 private:
  struct State {
    State(std::shared_ptr<const PolicyObjects> o,
          std::vector<std::shared_ptr<Interceptor>> chain_of, ChainOptions chain_options)
        : objects(std::move(o)), chain(std::move(chain_of), std::move(chain_options)) {
      if (objects->spec.timeout_policy) {
        overall = objects->spec.timeout_policy->overall;
      }
    }

    // The caller's options with the declared overall timeout applied to the deadline.
    CallOptions bounded(CallOptions options) const {
      if (overall > Duration::zero()) {
        options.deadline = options.deadline.min(Deadline::after(overall, chain.core().clock()));
      }
      return options;
    }

    std::shared_ptr<const PolicyObjects> objects;
    Chain<R> chain;
    Duration overall = Duration::zero();  // zero: no overall timeout of its own
  };

  void publish(std::unique_ptr<const State> state) {
    current_.store(state.get(), std::memory_order_release);
    states_.push_back(std::move(state));
  }

  std::unique_ptr<const State> build(const PolicySet& set, const PolicyObjects* previous) const {
    auto objects = build_policies(set, previous, options_);
    auto interceptors = objects->interceptors;
    if (fallback_) {
      interceptors.push_back(fallback_);
    }
    auto state = std::make_unique<State>(
        objects, std::move(interceptors),
        ChainOptions{
            .operation = operation_, .clock = options_.clock, .classify = options_.classify});
    state->chain.on_rejection(on_rejection_);
    return state;
  }

  std::string operation_;
  PolicySet declared_;
  std::shared_ptr<Interceptor> fallback_;
  BuildOptions options_;
  RejectionHook on_rejection_;
  mutable std::mutex apply_mutex_;
  std::vector<std::unique_ptr<const State>> states_;  // every chain published, oldest first
  std::atomic<const State*> current_{nullptr};
};

}  // namespace coromesh::qos
