#include "coromesh/qos/policy_runtime.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cctype>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>

#include "../http/json_body_parser.hpp"
#include "coromesh/config/error.hpp"
#include "coromesh/config/values.hpp"
#include "coromesh/qos/interceptors.hpp"

namespace coromesh::qos {

namespace json = boost::json;

namespace {

std::optional<int> explicit_weight(int weight) {
  return weight == 0 ? std::nullopt : std::optional<int>(weight);
}

// The previous object when its declaration is unchanged, else a fresh one.
template <class Object, class Spec, class Make>
std::shared_ptr<Object> reuse_or_make(const std::optional<Spec>& now,
                                      const std::optional<Spec>* before,
                                      const std::shared_ptr<Object>* previous, Make make) {
  if (!now) {
    return nullptr;
  }
  if (before != nullptr && *before == now && previous != nullptr && *previous) {
    return *previous;
  }
  return make(*now);
}

// The previous object while its policy stays declared (it is reconfigured in place), a new
// one from `make` when there is none, nullptr when the policy is not declared.
template <class Object, class Make>
std::shared_ptr<Object> kept_or_made(bool declared, const std::shared_ptr<Object>* previous,
                                     Make make) {
  if (!declared) {
    return nullptr;
  }
  if (previous != nullptr && *previous) {
    return *previous;
  }
  return make();
}

}  // namespace

std::shared_ptr<const PolicyObjects> build_policies(const PolicySet& spec,
                                                    const PolicyObjects* previous,
                                                    const BuildOptions& options) {
  if (auto error = validate(spec); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  const Clock& clock = options.clock != nullptr ? *options.clock : Clock::steady();
  auto objects = std::make_shared<PolicyObjects>();
  objects->spec = spec;
  const PolicySet* old = previous != nullptr ? &previous->spec : nullptr;
  auto& out = *objects;

  // A stateful policy is reconfigured, never replaced, while its kind stays declared: a new
  // breaker would start CLOSED (and let calls through to the callee that opened it), a new
  // rate limiter full (and admit a burst over the limit), a new concurrency limit would not
  // count the calls in flight on the old one, and admit them over again.
  const auto before = [previous](auto member) { return previous ? &(previous->*member) : nullptr; };
  out.breaker = kept_or_made(spec.breaker_policy.has_value(), before(&PolicyObjects::breaker), [&] {
    return std::make_shared<CircuitBreaker>(spec.breaker_policy->config(), clock);
  });
  // A change of algorithm is a new limiter: a level and tokens do not translate.
  const bool leaky =
      spec.rate_limit_policy && spec.rate_limit_policy->algorithm == RateAlgorithm::leaky_bucket;
  out.leaky_bucket = kept_or_made(leaky, before(&PolicyObjects::leaky_bucket), [&] {
    return std::make_shared<LeakyBucket>(spec.rate_limit_policy->leaky_bucket_config(), clock);
  });
  out.token_bucket =
      kept_or_made(spec.rate_limit_policy && !leaky, before(&PolicyObjects::token_bucket), [&] {
        return std::make_shared<TokenBucket>(spec.rate_limit_policy->token_bucket_config(), clock);
      });
  out.bulkhead =
      kept_or_made(spec.bulkhead_policy.has_value(), before(&PolicyObjects::bulkhead),
                   [&] { return std::make_shared<Bulkhead>(spec.bulkhead_policy->config()); });
  out.adaptive = kept_or_made(
      spec.adaptive_policy.has_value(), before(&PolicyObjects::adaptive),
      [&] { return std::make_shared<AdaptiveLimit>(spec.adaptive_policy->config(), clock); });
  // The budget is kept while its own fields are unchanged, and succeeded by one that
  // carries its window over when they change: an override tuned in the middle of a retry
  // storm (of the attempts, the backoff or the budget itself) must not refill a spent
  // budget and let the next burst of retries through.
  if (spec.retry_policy && spec.retry_policy->budget) {
    const auto budget_of = [](const std::optional<retry>& p) {
      return p && p->budget ? std::optional<RetryBudgetConfig>(p->budget_config()) : std::nullopt;
    };
    const auto now = budget_of(spec.retry_policy);
    const auto was = old != nullptr ? budget_of(old->retry_policy) : std::nullopt;
    const std::shared_ptr<RetryBudget>* predecessor =
        previous != nullptr && previous->budget && &previous->budget->clock() == &clock
            ? &previous->budget
            : nullptr;
    out.budget = reuse_or_make(
        now, old != nullptr ? &was : nullptr, predecessor, [&](const RetryBudgetConfig& config) {
          return predecessor != nullptr ? std::make_shared<RetryBudget>(config, **predecessor)
                                        : std::make_shared<RetryBudget>(config, clock);
        });
  }

  // In place, after everything that could fail: validate(spec) passed, so these cannot.
  // The BulkheadInterceptor below reads the new queue setting.
  if (previous != nullptr) {
    const auto kept = [](const auto& now, const auto& was) { return now && now == was; };
    if (kept(out.breaker, previous->breaker) && old->breaker_policy != spec.breaker_policy) {
      out.breaker->reconfigure(spec.breaker_policy->config());
    }
    const bool rate_changed = old->rate_limit_policy != spec.rate_limit_policy;
    if (kept(out.leaky_bucket, previous->leaky_bucket) && rate_changed) {
      out.leaky_bucket->reconfigure(spec.rate_limit_policy->leaky_bucket_config());
    }
    if (kept(out.token_bucket, previous->token_bucket) && rate_changed) {
      out.token_bucket->reconfigure(spec.rate_limit_policy->token_bucket_config());
    }
    if (kept(out.bulkhead, previous->bulkhead) && old->bulkhead_policy != spec.bulkhead_policy) {
      out.bulkhead->reconfigure(spec.bulkhead_policy->config());
    }
    if (kept(out.adaptive, previous->adaptive) && old->adaptive_policy != spec.adaptive_policy) {
      out.adaptive->reconfigure(spec.adaptive_policy->config());
    }
  }

  auto& chain = out.interceptors;
  if (const auto& t = spec.timeout_policy) {
    chain.push_back(std::make_shared<TimeoutInterceptor>(t->per_attempt, explicit_weight(t->weight),
                                                         "timeout", t->mode));
  }
  if (const auto& r = spec.retry_policy) {
    chain.push_back(std::make_shared<RetryInterceptor>(
        r->config(), RetryOptions{.budget = out.budget}, explicit_weight(r->weight)));
  }
  if (out.breaker) {
    chain.push_back(std::make_shared<CircuitBreakerInterceptor>(
        out.breaker, explicit_weight(spec.breaker_policy->weight)));
  }
  if (out.token_bucket) {
    chain.push_back(std::make_shared<RateLimitInterceptor>(
        out.token_bucket, explicit_weight(spec.rate_limit_policy->weight)));
  }
  if (out.leaky_bucket) {
    chain.push_back(std::make_shared<RateLimitInterceptor>(
        out.leaky_bucket, explicit_weight(spec.rate_limit_policy->weight), "rate_limit",
        spec.rate_limit_policy->shape));
  }
  if (out.bulkhead) {
    chain.push_back(std::make_shared<BulkheadInterceptor>(
        out.bulkhead, explicit_weight(spec.bulkhead_policy->weight)));
  }
  if (out.adaptive) {
    chain.push_back(std::make_shared<AdaptiveLimitInterceptor>(
        out.adaptive, explicit_weight(spec.adaptive_policy->weight)));
  }
  if (const auto& l = spec.log_policy) {
    chain.push_back(std::make_shared<LogInterceptor>(explicit_weight(l->weight)));
  }
  if (options.observer) {
    const int weight = spec.metrics_policy ? spec.metrics_policy->weight : 0;
    chain.push_back(
        std::make_shared<MetricsInterceptor>(options.observer, explicit_weight(weight)));
  }
  return objects;
}

// --- summary ----------------------------------------------------------------------------

namespace {

std::string rate_text(double fraction) {
  const double percent = fraction * 100.0;
  if (std::abs(percent - std::round(percent)) < 1e-9) {
    return std::to_string(static_cast<long long>(std::llround(percent))) + "%";
  }
  auto text = std::to_string(percent);
  text.erase(text.find_last_not_of('0') + 1);
  return text + "%";
}

template <class F>
std::string value_text(const F& field, const typename F::Policy& policy) {
  using T = typename F::Type;
  const T& value = policy.*field.member;
  if constexpr (std::is_same_v<T, bool>) {
    return "";  // a flag in the summary is its prefix alone
  } else if constexpr (std::is_enum_v<T>) {
    for (const auto& [name, v] : EnumNames<T>::values) {
      if (v == value) {
        return std::string(name);
      }
    }
    return "?";
  } else if constexpr (std::is_same_v<T, Duration>) {
    return config::format_duration(value);
  } else if constexpr (std::is_floating_point_v<T>) {
    return field.percent ? rate_text(value) : std::to_string(value);
  } else {
    return std::to_string(value);
  }
}

// "<kind>" followed by each summarized field as <prefix><value>.
template <class P>
std::string summarize_one(const P& policy) {
  std::string item(Description<P>::kind);
  for_each_field<P>([&](const auto& field) {
    using T = typename std::remove_cvref_t<decltype(field)>::Type;
    if (field.summary == nullptr || (field.shown != nullptr && !field.shown(policy))) {
      return;
    }
    if constexpr (std::is_same_v<T, bool>) {
      if (!(policy.*field.member)) {
        return;
      }
    }
    item += field.summary + value_text(field, policy);
  });
  return item;
}

}  // namespace

std::string summarize(const PolicySet& set) {
  std::string out;
  std::apply(
      [&out](const auto&... slot) {
        auto add = [&out](const auto& policy) {
          using P = typename std::remove_cvref_t<decltype(policy)>::value_type;
          if (Description<P>::summarized && policy) {
            out += (out.empty() ? "" : " ") + summarize_one(*policy);
          }
        };
        (add(slot), ...);
      },
      set.slots());
  constexpr std::size_t kConsulMetaValueLimit = 512;
  if (out.size() > kConsulMetaValueLimit) {
    out.resize(kConsulMetaValueLimit);
  }
  return out;
}

// --- overrides --------------------------------------------------------------------------

namespace {

[[noreturn]] void refuse(std::string_view kind, std::string_view field, std::string_view why) {
  throw std::invalid_argument(std::string(kind) + (field.empty() ? "" : ".") + std::string(field) +
                              ": " + std::string(why));
}

// Whether a check's message starts with the kind's name, spelt with '_' or ' '.
bool names_kind(std::string_view error, std::string_view kind) {
  if (error.size() <= kind.size()) {
    return false;
  }
  for (std::size_t i = 0; i < kind.size(); ++i) {
    if (error[i] != kind[i] && !(kind[i] == '_' && error[i] == ' ')) {
      return false;
    }
  }
  return error[kind.size()] == ':' || error[kind.size()] == ' ';
}

// Reads one JSON member into one described field; bounds are checked afterwards, with
// the policy's other checks (validate()).
template <class F>
void read_field(std::string_view kind, const F& field, const json::value& v,
                typename F::Policy& policy) {
  using T = typename F::Type;
  T& out = policy.*field.member;
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_bool()) {
      refuse(kind, field.name, "expected true or false");
    }
    out = v.get_bool();
  } else if constexpr (std::is_enum_v<T>) {
    std::string allowed;
    for (const auto& [name, value] : EnumNames<T>::values) {
      if (v.is_string() && v.get_string() == name) {
        out = value;
        return;
      }
      allowed += (allowed.empty() ? "" : ", ") + std::string(name);
    }
    refuse(kind, field.name, "expected one of " + allowed);
  } else if constexpr (std::is_same_v<T, Duration>) {
    if (!v.is_string()) {
      refuse(kind, field.name, R"(expected a duration string such as "250ms")");
    }
    try {
      out = config::parse_duration(std::string_view(v.get_string()));
    } catch (const std::exception& e) {
      refuse(kind, field.name, e.what());
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) {
      refuse(kind, field.name, "expected a number");
    }
    out = v.to_number<double>();
  } else {
    // Integers: read as int64 and refused outside the field's bounds before narrowing.
    std::int64_t value = 0;
    if (v.is_int64()) {
      value = v.get_int64();
    } else if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(
                                                      std::numeric_limits<std::int64_t>::max())) {
      value = static_cast<std::int64_t>(v.get_uint64());
    } else if (v.is_uint64()) {
      throw std::invalid_argument(std::string(field.out_of_range));
    } else {
      refuse(kind, field.name, "expected an integer");
    }
    if (value < static_cast<std::int64_t>(field.min) ||
        value > static_cast<std::int64_t>(field.max)) {
      throw std::invalid_argument(std::string(field.out_of_range));
    }
    out = static_cast<T>(value);
  }
}

// The override of one kind: null switches it off, an object changes the fields it names.
template <class P>
void override_kind(std::optional<P>& slot, const json::value& value) {
  constexpr std::string_view kind = Description<P>::kind;
  if (value.is_null()) {
    slot.reset();
    return;
  }
  if (!value.is_object()) {
    refuse(kind, "", "expected an object of fields, or null to switch the policy off");
  }
  P policy = slot.value_or(P{});
  for (const auto& member : value.get_object()) {
    bool known = false;
    for_each_field<P>([&](const auto& field) {
      if (!known && field.name == member.key()) {
        known = true;
        read_field(kind, field, member.value(), policy);
      }
    });
    if constexpr (std::is_same_v<P, retry>) {
      if (!known && member.key() == "retry_on") {
        // A real field, so "unknown field" would mislead; and whoever writes it here
        // most likely wants 429 retried, which no retry policy does.
        throw std::invalid_argument(
            "retry.retry_on: only the declaration sets it (a KV override cannot), and it "
            "lists 5xx statuses only: a callee's 429 is its refusal and never retried");
      }
    }
    if (!known) {
      // The name is the document's, not ours: quoted, escaped and clipped (a key holding
      // a NUL would otherwise end the message there, a newline would forge a log line).
      throw std::invalid_argument(std::string(kind) + ": unknown field " +
                                  config::quote_value(member.key()));
    }
  }
  // The kind's name leads the message once: most checks name it already ("bulkhead:
  // ...", "circuit breaker: ..."), some name a part ("token bucket: ...").
  if (auto error = validate(policy); !error.empty()) {
    throw std::invalid_argument(names_kind(error, kind)
                                    ? std::string(error)
                                    : std::string(kind) + ": " + std::string(error));
  }
  slot = policy;
}

// Whether `overridden` lets retries run a call whatever its method where `base` did not.
bool lifts_idempotent_only(const PolicySet& base, const PolicySet& overridden) {
  auto any_method = [](const PolicySet& set) {
    return set.retry_policy && !set.retry_policy->config().idempotent_only;
  };
  return any_method(overridden) && !any_method(base);
}

}  // namespace

PolicySet apply_override(const PolicySet& base, std::string_view document,
                         bool retries_without_opt_in) {
  // Refusing a key given twice, as a request body does: Boost.JSON would keep the last
  // copy without a word, and whoever wrote or reviewed the document may have read the other.
  constexpr std::size_t kMaxDepth = 32;
  auto parsed = http::binding_detail::parse_json_refusing_duplicate_keys(document, kMaxDepth);
  if (parsed.error) {
    // ec.message() alone: what() would append the Boost source location.
    throw std::invalid_argument("not valid JSON: " + parsed.error.message());
  }
  if (parsed.duplicate_key) {
    const std::string& path = *parsed.duplicate_key;
    const bool plain = path.size() <= 64 && std::all_of(path.begin(), path.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' ||
                                c == '.' || c == '[' || c == ']';
                       });
    throw std::invalid_argument((plain ? path : config::quote_value(path)) +
                                ": given more than once");
  }
  json::value root = std::move(parsed.value);
  if (!root.is_object()) {
    throw std::invalid_argument("expected a JSON object with one member per policy kind");
  }
  PolicySet set = base;
  for (const auto& [key, value] : root.get_object()) {
    bool known = false;
    std::apply(
        [&](auto&... slot) {
          auto one = [&](auto& s) {
            using P = typename std::remove_cvref_t<decltype(s)>::value_type;
            if (!known && Description<P>::kind == key) {
              known = true;
              override_kind(s, value);
            }
          };
          (one(slot), ...);
        },
        set.slots());
    if (!known && key == "fallback") {
      // Declared, but as code (a value or a function of the result type): nothing a KV
      // document could replace or switch off.
      throw std::invalid_argument(
          "fallback: cannot be overridden from Consul KV (it is code in the declaration)");
    }
    if (!known) {
      throw std::invalid_argument("unknown policy kind " + config::quote_value(key));
    }
  }
  if (auto error = validate(set); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  if (lifts_idempotent_only(base, set)) {
    // Only the declaration may let retries send a non-idempotent call (a POST) again:
    // qos::retry{.non_idempotent = true}, checked against the method when it compiles.
    // An operator's override doing it would repeat calls that may have taken effect.
    throw std::invalid_argument(
        "retry: idempotent_only cannot be turned off by an override; a non-idempotent "
        "operation declares qos::retry{.non_idempotent = true} if retrying it is safe");
  }
  if (!retries_without_opt_in && set.retry_policy && set.retry_policy->config().max_attempts > 1 &&
      set.retry_policy->config().idempotent_only) {
    // A served POST's retry without the declaration's opt-in never retries (its handler
    // ran: nothing it lets escape is "not delivered"): refused as the compiler refuses it,
    // rather than shown in Meta and never run.
    throw std::invalid_argument(
        "retry: the operation's method is not idempotent (POST, PATCH), so a retry could "
        "run a call twice; only its declaration may allow it, with "
        "qos::retry{.non_idempotent = true}");
  }
  return set;
}

}  // namespace coromesh::qos
