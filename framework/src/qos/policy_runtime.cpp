#include "coromesh/qos/policy_runtime.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

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

  out.breaker =
      reuse_or_make(spec.breaker_policy, old ? &old->breaker_policy : nullptr,
                    previous ? &previous->breaker : nullptr, [&](const circuit_breaker& p) {
                      return std::make_shared<CircuitBreaker>(p.config(), clock);
                    });
  if (spec.rate_limit_policy && spec.rate_limit_policy->algorithm == RateAlgorithm::leaky_bucket) {
    out.leaky_bucket =
        reuse_or_make(spec.rate_limit_policy, old ? &old->rate_limit_policy : nullptr,
                      previous ? &previous->leaky_bucket : nullptr, [&](const rate_limit& p) {
                        return std::make_shared<LeakyBucket>(p.leaky_bucket_config(), clock);
                      });
  } else {
    out.token_bucket =
        reuse_or_make(spec.rate_limit_policy, old ? &old->rate_limit_policy : nullptr,
                      previous ? &previous->token_bucket : nullptr, [&](const rate_limit& p) {
                        return std::make_shared<TokenBucket>(p.token_bucket_config(), clock);
                      });
  }
  out.bulkhead = reuse_or_make(spec.bulkhead_policy, old ? &old->bulkhead_policy : nullptr,
                               previous ? &previous->bulkhead : nullptr, [](const bulkhead& p) {
                                 return std::make_shared<Bulkhead>(p.config());
                               });
  out.adaptive = reuse_or_make(
      spec.adaptive_policy, old ? &old->adaptive_policy : nullptr,
      previous ? &previous->adaptive : nullptr,
      [&](const adaptive_limit& p) { return std::make_shared<AdaptiveLimit>(p.config(), clock); });
  if (spec.retry_policy && spec.retry_policy->budget) {
    out.budget = reuse_or_make(spec.retry_policy, old ? &old->retry_policy : nullptr,
                               previous ? &previous->budget : nullptr, [&](const retry& p) {
                                 return std::make_shared<RetryBudget>(p.budget_config(), clock);
                               });
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

}  // namespace

std::string summarize(const PolicySet& set) {
  std::string out;
  auto add = [&out](const std::string& item) { out += (out.empty() ? "" : " ") + item; };
  if (set.log_policy) {
    add("log");
  }
  if (const auto& r = set.retry_policy) {
    add("retry=" + std::to_string(r->max_attempts) + "x" +
        config::format_duration(r->base_backoff) + (r->budget ? "+budget" : ""));
  }
  if (const auto& b = set.breaker_policy) {
    add("circuit_breaker=" + rate_text(b->failure_rate) + "/" +
        (b->window_type == WindowType::count_based ? std::to_string(b->window)
                                                   : config::format_duration(b->window_duration)));
  }
  if (const auto& r = set.rate_limit_policy) {
    add("rate_limit=" + std::to_string(r->permits) + "/" + config::format_duration(r->period) +
        (r->algorithm == RateAlgorithm::leaky_bucket ? (r->shape ? "-shaped" : "-leaky") : ""));
  }
  if (const auto& t = set.timeout_policy) {
    add("timeout=" + config::format_duration(t->per_attempt) +
        (t->overall > Duration::zero() ? "/" + config::format_duration(t->overall) : ""));
  }
  if (const auto& b = set.bulkhead_policy) {
    add("bulkhead=" + std::to_string(b->max_concurrent) +
        (b->max_queue > 0 ? "+" + std::to_string(b->max_queue) : ""));
  }
  if (const auto& a = set.adaptive_policy) {
    add("adaptive_limit=" + std::to_string(a->min_limit) + ".." + std::to_string(a->max_limit));
  }
  constexpr std::size_t kConsulMetaValueLimit = 512;
  if (out.size() > kConsulMetaValueLimit) {
    out.resize(kConsulMetaValueLimit);
  }
  return out;
}

// --- overrides --------------------------------------------------------------------------

namespace {

[[noreturn]] void refuse(std::string_view kind, std::string_view field, const std::string& why) {
  throw std::invalid_argument(std::string(kind) + (field.empty() ? "" : ".") + std::string(field) +
                              ": " + why);
}

// Reads the fields of one kind's object into `policy`, refusing unknown ones.
class FieldReader {
 public:
  FieldReader(std::string_view kind, const json::object& fields) : kind_(kind), fields_(fields) {}

  template <class Int>
  void integer(std::string_view name, Int& out, Int min, Int max) {
    const json::value* v = find(name);
    if (v == nullptr) {
      return;
    }
    std::int64_t value = 0;
    if (v->is_int64()) {
      value = v->get_int64();
    } else if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(
                                                        std::numeric_limits<std::int64_t>::max())) {
      value = static_cast<std::int64_t>(v->get_uint64());
    } else {
      refuse(kind_, name, "expected an integer");
    }
    if (value < static_cast<std::int64_t>(min) || value > static_cast<std::int64_t>(max)) {
      refuse(kind_, name,
             "out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    }
    out = static_cast<Int>(value);
  }

  void number(std::string_view name, double& out) {
    const json::value* v = find(name);
    if (v == nullptr) {
      return;
    }
    if (!v->is_number()) {
      refuse(kind_, name, "expected a number");
    }
    out = v->to_number<double>();
  }

  void boolean(std::string_view name, bool& out) {
    const json::value* v = find(name);
    if (v == nullptr) {
      return;
    }
    if (!v->is_bool()) {
      refuse(kind_, name, "expected true or false");
    }
    out = v->get_bool();
  }

  void duration(std::string_view name, Duration& out) {
    const json::value* v = find(name);
    if (v == nullptr) {
      return;
    }
    if (!v->is_string()) {
      refuse(kind_, name, R"(expected a duration string such as "250ms")");
    }
    try {
      out = config::parse_duration(std::string_view(v->get_string()));
    } catch (const std::exception& e) {
      refuse(kind_, name, e.what());
    }
  }

  template <class Enum, std::size_t N>
  void choice(std::string_view name, Enum& out,
              const std::array<std::pair<std::string_view, Enum>, N>& names) {
    const json::value* v = find(name);
    if (v == nullptr) {
      return;
    }
    std::string allowed;
    for (const auto& [text, value] : names) {
      if (v->is_string() && v->get_string() == text) {
        out = value;
        return;
      }
      allowed += (allowed.empty() ? "" : ", ") + std::string(text);
    }
    refuse(kind_, name, "expected one of " + allowed);
  }

  void weight(int& out) { integer<int>("weight", out, -1'000'000, 1'000'000); }

  // Every member of the object must have been read.
  void finish() const {
    for (const auto& member : fields_) {
      bool known = false;
      for (auto seen : seen_) {
        known = known || seen == member.key();
      }
      if (!known) {
        refuse(kind_, member.key(), "unknown field");
      }
    }
  }

 private:
  const json::value* find(std::string_view name) {
    seen_.push_back(name);
    return fields_.if_contains(name);
  }

  std::string_view kind_;
  const json::object& fields_;
  std::vector<std::string_view> seen_;
};

template <class Policy, class Read>
void override_kind(std::optional<Policy>& slot, std::string_view kind, const json::value& value,
                   Read read) {
  if (value.is_null()) {
    slot.reset();
    return;
  }
  if (!value.is_object()) {
    refuse(kind, "", "expected an object of fields, or null to switch the policy off");
  }
  Policy policy = slot.value_or(Policy{});
  FieldReader reader(kind, value.get_object());
  read(reader, policy);
  reader.finish();
  if (auto error = validate(policy); !error.empty()) {
    refuse(kind, "", std::string(error));
  }
  slot = policy;
}

constexpr std::uint32_t kU32Max = std::numeric_limits<std::uint32_t>::max();

}  // namespace

PolicySet apply_override(const PolicySet& base, std::string_view document) {
  json::value root;
  try {
    root = json::parse(document);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_object()) {
    throw std::invalid_argument("expected a JSON object with one member per policy kind");
  }
  PolicySet set = base;
  for (const auto& [key, value] : root.get_object()) {
    if (key == "timeout") {
      override_kind(set.timeout_policy, key, value, [](FieldReader& r, timeout& p) {
        r.duration("per_attempt", p.per_attempt);
        r.duration("overall", p.overall);
        r.choice("mode", p.mode,
                 std::array{std::pair{std::string_view("preemptive"), TimeoutMode::preemptive},
                            std::pair{std::string_view("deadline"), TimeoutMode::deadline}});
        r.weight(p.weight);
      });
    } else if (key == "retry") {
      override_kind(set.retry_policy, key, value, [](FieldReader& r, retry& p) {
        r.integer<std::uint32_t>("max_attempts", p.max_attempts, 0, kU32Max);
        r.duration("base_backoff", p.base_backoff);
        r.duration("max_backoff", p.max_backoff);
        r.number("multiplier", p.multiplier);
        r.choice("jitter", p.jitter,
                 std::array{std::pair{std::string_view("none"), Jitter::none},
                            std::pair{std::string_view("full"), Jitter::full},
                            std::pair{std::string_view("equal"), Jitter::equal}});
        r.boolean("idempotent_only", p.idempotent_only);
        r.boolean("budget", p.budget);
        r.number("budget_ratio", p.budget_ratio);
        r.integer<std::uint32_t>("budget_min_per_second", p.budget_min_per_second, 0, kU32Max);
        r.duration("budget_ttl", p.budget_ttl);
        r.weight(p.weight);
      });
    } else if (key == "circuit_breaker") {
      override_kind(set.breaker_policy, key, value, [](FieldReader& r, circuit_breaker& p) {
        r.number("failure_rate", p.failure_rate);
        r.number("slow_call_rate", p.slow_call_rate);
        r.duration("slow_call", p.slow_call);
        r.integer<std::uint32_t>("window", p.window, 0, kU32Max);
        r.choice("window_type", p.window_type,
                 std::array{std::pair{std::string_view("count"), WindowType::count_based},
                            std::pair{std::string_view("time"), WindowType::time_based}});
        r.duration("window_duration", p.window_duration);
        r.integer<std::uint32_t>("minimum_calls", p.minimum_calls, 0, kU32Max);
        r.duration("open_for", p.open_for);
        r.integer<std::uint32_t>("half_open_calls", p.half_open_calls, 0, kU32Max);
        r.weight(p.weight);
      });
    } else if (key == "rate_limit") {
      override_kind(set.rate_limit_policy, key, value, [](FieldReader& r, rate_limit& p) {
        r.integer<std::uint64_t>("permits", p.permits, 0, std::uint64_t{1} << 40);
        r.duration("period", p.period);
        r.integer<std::uint64_t>("burst", p.burst, 0, std::uint64_t{1} << 40);
        r.choice(
            "algorithm", p.algorithm,
            std::array{std::pair{std::string_view("token_bucket"), RateAlgorithm::token_bucket},
                       std::pair{std::string_view("leaky_bucket"), RateAlgorithm::leaky_bucket}});
        r.boolean("shape", p.shape);
        r.weight(p.weight);
      });
    } else if (key == "bulkhead") {
      override_kind(set.bulkhead_policy, key, value, [](FieldReader& r, bulkhead& p) {
        r.integer<std::uint32_t>("max_concurrent", p.max_concurrent, 0, kU32Max);
        r.integer<std::uint32_t>("max_queue", p.max_queue, 0, kU32Max);
        r.duration("max_wait", p.max_wait);
        r.weight(p.weight);
      });
    } else if (key == "adaptive_limit") {
      override_kind(set.adaptive_policy, key, value, [](FieldReader& r, adaptive_limit& p) {
        r.integer<std::uint32_t>("initial_limit", p.initial_limit, 0, kU32Max);
        r.integer<std::uint32_t>("min_limit", p.min_limit, 0, kU32Max);
        r.integer<std::uint32_t>("max_limit", p.max_limit, 0, kU32Max);
        r.number("backoff_ratio", p.backoff_ratio);
        r.duration("timeout", p.timeout);
        r.duration("latency_target", p.latency_target);
        r.number("tolerance", p.tolerance);
        r.duration("baseline_window", p.baseline_window);
        r.weight(p.weight);
      });
    } else if (key == "log") {
      override_kind(set.log_policy, key, value, [](FieldReader& r, log& p) { r.weight(p.weight); });
    } else if (key == "metrics") {
      override_kind(set.metrics_policy, key, value,
                    [](FieldReader& r, metrics& p) { r.weight(p.weight); });
    } else {
      refuse(key, "", "unknown policy kind");
    }
  }
  if (auto error = validate(set); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  return set;
}

}  // namespace coromesh::qos
