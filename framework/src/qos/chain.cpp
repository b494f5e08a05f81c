#include "coromesh/qos/chain.hpp"

#include <algorithm>

#include "coromesh/log/logger.hpp"

namespace coromesh::qos {

namespace asio = boost::asio;

// --- Invocation / Next / ChainCore ------------------------------------------------------

Invocation::Invocation(const ChainCore& core, CallOptions options) noexcept
    : core_(&core), options_(options) {}

const std::string& Invocation::operation() const noexcept {
  return core_->operation();
}

const Clock& Invocation::clock() const noexcept {
  return core_->clock();
}

const Fault& Invocation::fault(const std::exception_ptr& error) {
  if (!last_fault_ || last_fault_->error != error) {
    last_fault_ = Fault::from(error, core_->classifier());
    if (last_fault_->kind == FaultClass::cancelled && attempt_timed_out_) {
      last_fault_->kind = FaultClass::timeout;
    }
  }
  return *last_fault_;
}

void Invocation::reject(std::string_view policy, Reason reason) const {
  core_->notify_rejection(policy, reason);
  throw QosRejected(std::string(policy), reason);
}

asio::awaitable<void> Next::operator()() const {
  return core_->run_from(index_, *invocation_, *terminal_);
}

ChainCore::ChainCore(std::vector<std::shared_ptr<Interceptor>> interceptors, ChainOptions options)
    : interceptors_(std::move(interceptors)), options_(std::move(options)) {
  if (options_.clock == nullptr) {
    options_.clock = &Clock::steady();
  }
  for (const auto& interceptor : interceptors_) {
    if (!interceptor) {
      throw std::invalid_argument("qos chain: null interceptor");
    }
  }
  std::stable_sort(interceptors_.begin(), interceptors_.end(),
                   [](const std::shared_ptr<Interceptor>& a,
                      const std::shared_ptr<Interceptor>& b) { return a->weight() < b->weight(); });
  const std::size_t n = interceptors_.size();
  synchronous_.assign(n, nullptr);
  segment_end_.assign(n, n);
  for (std::size_t i = n; i-- > 0;) {
    if (interceptors_[i]->synchronous()) {
      synchronous_[i] = static_cast<SynchronousInterceptor*>(interceptors_[i].get());
      segment_end_[i] = (i + 1 < n && synchronous_[i + 1] != nullptr) ? segment_end_[i + 1] : i + 1;
    }
  }
}

std::vector<std::string> ChainCore::order() const {
  std::vector<std::string> names;
  names.reserve(interceptors_.size());
  for (const auto& interceptor : interceptors_) {
    names.push_back(interceptor->name());
  }
  return names;
}

void ChainCore::notify_rejection(std::string_view policy, Reason reason) const {
  if (hook_) {
    hook_(policy, reason);
  }
}

asio::awaitable<void> ChainCore::run_from(std::size_t index, Invocation& invocation,
                                          const Terminal& terminal) const {
  if (index >= interceptors_.size()) {
    return terminal(invocation);
  }
  if (synchronous_[index] != nullptr) {
    return run_segment(index, invocation, terminal);
  }
  return interceptors_[index]->around(invocation, Next(*this, index + 1, invocation, terminal));
}

// One coroutine frame for a whole run of synchronous interceptors: their request phases
// outermost first, the rest of the chain, then the outcome phases innermost first for
// those that admitted the call. A rejection in a request phase is a fault for the ones
// outside it, exactly as it would be in the nested form.
asio::awaitable<void> ChainCore::run_segment(std::size_t begin, Invocation& invocation,
                                             const Terminal& terminal) const {
  const std::size_t end = segment_end_[begin];
  const auto start = clock().now();
  invocation.set_phase_time(start);
  std::size_t admitted = begin;
  std::exception_ptr error;
  try {
    for (; admitted < end; ++admitted) {
      synchronous_[admitted]->on_request(invocation);
    }
    co_await run_from(end, invocation, terminal);
  } catch (...) {
    error = std::current_exception();
  }
  const Fault* fault = error ? &invocation.fault(error) : nullptr;
  const Outcome outcome{clock().now() - start, fault};
  for (std::size_t k = admitted; k-- > begin;) {
    synchronous_[k]->on_outcome(invocation, outcome);
  }
  if (error) {
    std::rethrow_exception(error);
  }
}

// --- Synchronous and phase interceptors -------------------------------------------------

asio::awaitable<void> SynchronousInterceptor::around(Invocation& invocation, Next next) {
  const auto start = invocation.clock().now();
  invocation.set_phase_time(start);
  on_request(invocation);
  std::exception_ptr error;
  try {
    co_await next();
  } catch (...) {
    error = std::current_exception();
  }
  const Fault* fault = error ? &invocation.fault(error) : nullptr;
  on_outcome(invocation, Outcome{invocation.clock().now() - start, fault});
  if (error) {
    std::rethrow_exception(error);
  }
}

void PhaseInterceptor::on_outcome(Invocation& invocation, const Outcome& outcome) noexcept {
  try {
    if (outcome.ok()) {
      process_response(invocation);
    } else {
      process_fault(invocation, outcome.fault->error);
    }
  } catch (const std::exception& e) {
    log::error(
        "qos.phase_failed",
        {{"operation", invocation.operation()}, {"interceptor", name()}, {"error", e.what()}});
  } catch (...) {
    log::error("qos.phase_failed",
               {{"operation", invocation.operation()}, {"interceptor", name()}});
  }
}

}  // namespace coromesh::qos
