#include "coromesh/consul/registrar.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <stdexcept>
#include <utility>
#include <variant>

#include "coromesh/consul/backoff.hpp"
#include "coromesh/log/logger.hpp"

namespace coromesh::consul {
namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// (Callers bind the result to a local before testing it: g++ 12 miscompiles a co_await
// inside an if/switch condition expression.)
asio::awaitable<bool> cancelled() {
  co_return (co_await asio::this_coro::cancellation_state).cancelled() !=
      asio::cancellation_type::none;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(use_tuple);
}

// A failure as a value, so that `||` with a timer completes as soon as the step does,
// failed or not (an exception would make it wait for the timer instead).
asio::awaitable<std::optional<std::string>> outcome(asio::awaitable<void> step) {
  try {
    co_await std::move(step);
  } catch (const std::exception& e) {
    co_return std::string(e.what());
  }
  co_return std::nullopt;
}

}  // namespace

Registrar::Registrar(AgentClient& consul, ServiceRegistration registration,
                     RegistrarOptions options)
    : consul_(consul),
      registration_(std::move(registration)),
      options_(std::move(options)),
      service_id_(registration_.id.empty() ? registration_.name : registration_.id) {}

Registrar::~Registrar() = default;

asio::awaitable<void> Registrar::run() {
  if (started_) {
    throw std::logic_error("Registrar::run() called twice for " + service_id_);
  }
  started_ = true;
  if (stopping_) {
    co_return;
  }
  running_ = true;
  auto executor = co_await asio::this_coro::executor;
  stop_.emplace(executor, asio::steady_timer::time_point::max());
  done_.emplace(executor, asio::steady_timer::time_point::max());
  wake_.emplace(executor);

  // shutdown() ends the wait on stop_, and `||` then cancels keep() wherever it is,
  // mid agent call included.
  std::exception_ptr error;
  try {
    co_await (keep() || stop_->async_wait(use_tuple));
  } catch (...) {
    error = std::current_exception();
  }
  running_ = false;
  done_->cancel();
  if (error) {
    std::rethrow_exception(error);
  }
  if (fatal_) {
    std::rethrow_exception(std::exchange(fatal_, nullptr));
  }
}

asio::awaitable<void> Registrar::keep() {
  bool registered = co_await register_with_retry();
  if (!registered) {
    co_return;
  }
  Backoff outage_probe(options_.outage_probe_initial, options_.outage_probe_max);
  bool hold_query = true;
  for (;;) {
    bool query_failed = false;
    bool checked = false;  // the agent just answered that it holds the registration
    if (resync_failures_ > 0) {
      // The agent stopped answering: probe it often, so that a restarted agent gets the
      // registration back soon after it answers again (resync() re-registers).
      wake_->expires_after(outage_probe.next());
      co_await wake_->async_wait(use_tuple);
    } else if (sent_generation_ == generation_ || resync_refusals_ > 0) {
      // (An update the agent refused waits for the tick too: sending it again at once
      // would only be refused again.)
      outage_probe.reset();
      if (hold_query && agent_blocks_) {
        // The query answers within about resync_interval whatever happens, and an answer
        // that the agent holds the registration is the resync's own check. The timer is
        // a backstop for a query that never answers, and update() cancels it.
        wake_->expires_after(2 * options_.resync_interval);
        auto woken = co_await (wake_->async_wait(use_tuple) || watch_registration());
        if (woken.index() == 1) {
          const Watched watched = std::get<1>(woken);
          checked = watched == Watched::held;
          query_failed = watched == Watched::query_failed;
        }
      } else {
        // The resync tick, or an update().
        wake_->expires_after(options_.resync_interval);
        co_await wake_->async_wait(use_tuple);
      }
    }
    // (An update() waiting to be sent goes at once.)
    bool stop = co_await cancelled();
    if (stop) {
      co_return;
    }
    if (checked && resync_refusals_ == 0 && sent_generation_ == generation_ &&
        sent_credentials_ == consul_.credentials_generation()) {
      continue;  // held as last sent: nothing to resync
    }
    co_await resync();
    // A blocking query that failed while the agent answers the resync would fail again at
    // once (an agent at its per-client connection limit answers the query's own new
    // connection with 429): holding it again would loop on the agent. Until the next
    // tick, the tick alone does the checking; an agent that went away fails the resync
    // too, and the outage probes then lead back to the blocking query.
    hold_query = !(query_failed && resync_failures_ == 0);
  }
}

asio::awaitable<bool> Registrar::register_with_retry() {
  Backoff backoff(options_.retry_initial, options_.retry_max);
  for (;;) {
    std::string error;
    try {
      const std::uint64_t sending = generation_;
      const std::uint64_t credentials = consul_.credentials_generation();
      ServiceRegistration definition = registration_;  // update() may replace it meanwhile
      co_await consul_.register_service(definition);
      accepted_ = std::move(definition);
      sent_generation_ = sending;
      sent_credentials_ = credentials;
      registered_ = true;
      ++registrations_;
      log::info("consul.registered", {{"service", registration_.name},
                                      {"id", service_id_},
                                      {"attempts", backoff.failures() + 1}});
      co_return true;
    } catch (const ConsulError& e) {
      if (e.caller_fault()) {
        log::error("consul.register.rejected", {{"id", service_id_}, {"error", e.what()}});
        fatal_ = std::current_exception();
        co_return false;
      }
      error = e.what();
    } catch (const std::exception& e) {
      error = e.what();
    }
    bool stop = co_await cancelled();
    if (stop) {
      co_return false;
    }
    auto delay = backoff.next();
    if (backoff.failures() == 1) {  // once per streak: the agent may take a while to come up
      log::warn("consul.register.error",
                {{"id", service_id_}, {"error", error}, {"retry_in", delay}});
    }
    co_await sleep_for(delay);
    stop = co_await cancelled();
    if (stop) {
      co_return false;
    }
  }
}

asio::awaitable<void> Registrar::resync() {
  std::string error;
  bool refused = false;
  bool update_refused = false;
  try {
    const std::uint64_t sending = generation_;
    const std::uint64_t credentials = consul_.credentials_generation();
    if (sent_generation_ != sending || sent_credentials_ != credentials) {
      ServiceRegistration definition = registration_;  // update() may replace it meanwhile
      try {
        co_await consul_.register_service(definition);
      } catch (const ConsulError& e) {
        if (!e.caller_fault()) {
          throw;  // the agent's trouble, not a verdict on the definition
        }
        // Refused: the caller's definition (or credentials) at fault. The agent keeps what
        // it held, but it may have lost that meanwhile (a restart, an operator's
        // deregistration): the last definition it accepted must stay registered.
        update_refused = true;
        error = e.what();
      }
      if (update_refused) {
        co_await keep_last_accepted();
      } else {
        log::info("consul.registration_updated",
                  {{"service", definition.name},
                   {"id", service_id_},
                   {"why", sent_generation_ != sending ? "changed" : "new credentials"}});
        accepted_ = std::move(definition);
        sent_generation_ = sending;
        sent_credentials_ = credentials;
        if (!registered_) {
          // A resync had found the registration gone and failed to put it back: this
          // registration is the one that did.
          registered_ = true;
          ++registrations_;
          log::info("consul.reregistered", {{"service", registration_.name}, {"id", service_id_}});
        }
      }
    } else {
      co_await keep_last_accepted();
    }
    if (!update_refused) {
      if (resync_failures_ + resync_refusals_ > 0) {
        log::info("consul.resync.recovered",
                  {{"id", service_id_}, {"failures", resync_failures_ + resync_refusals_}});
        resync_failures_ = 0;
        resync_refusals_ = 0;
      }
      co_return;
    }
    refused = true;
  } catch (const ConsulError& e) {
    error = e.what();
    // The agent answers, and refuses our request or credentials (a token revoked at run
    // time): not an outage to probe for, the resync tick tries again.
    refused = e.caller_fault();
    update_refused = false;  // whatever became of an update, this failure came after it
  } catch (const std::exception& e) {
    error = e.what();
    update_refused = false;
  }
  bool stop = co_await cancelled();
  if (stop) {
    co_return;
  }
  if (update_refused && resync_refusals_ == 0) {
    // The caller's fault (counted as `rejected` by the agent client): sent again at each
    // resync tick, logged once per streak.
    log::error(
        "consul.update.rejected",
        {{"id", service_id_}, {"error", error}, {"registered", "the last accepted definition"}});
  } else if (resync_failures_ + resync_refusals_ == 0) {
    log::warn("consul.resync.error", {{"id", service_id_}, {"error", error}});
  }
  if (refused) {
    ++resync_refusals_;
    resync_failures_ = 0;
  } else {
    ++resync_failures_;
    resync_refusals_ = 0;
  }
}

asio::awaitable<void> Registrar::keep_last_accepted() {
  auto held = co_await consul_.agent_service(service_id_);  // (see cancelled(): not in the if)
  if (!held) {
    registered_ = false;
    co_await consul_.register_service(accepted_);
    registered_ = true;
    ++registrations_;
    log::info("consul.reregistered", {{"service", accepted_.name}, {"id", service_id_}});
  }
}

asio::awaitable<Registrar::Watched> Registrar::watch_registration() {
  HashQueryResult<std::optional<AgentService>> answer;
  try {
    answer = co_await consul_.agent_service_blocking(
        service_id_, {.hash = watched_hash_, .wait = options_.resync_interval});
  } catch (const std::exception&) {
    watched_hash_.clear();
    co_return Watched::query_failed;  // the agent went away (or the call was cancelled)
  }
  if (!answer.value) {
    watched_hash_.clear();
    co_return Watched::gone;  // the agent no longer has it: re-register now
  }
  if (answer.hash.empty()) {
    // The agent cannot hold this query (it would answer at once, every time): the resync
    // tick alone does the checking from now on.
    agent_blocks_ = false;
  }
  watched_hash_ = std::move(answer.hash);
  co_return Watched::held;
}

void Registrar::update(ServiceRegistration registration) {
  const std::string id = registration.id.empty() ? registration.name : registration.id;
  if (id != service_id_) {
    throw std::invalid_argument("Registrar::update: the service ID cannot change (" + service_id_ +
                                " -> " + id + ")");
  }
  registration_ = std::move(registration);
  ++generation_;
  if (wake_) {
    wake_->cancel();
  }
}

asio::awaitable<void> Registrar::shutdown() {
  if (stopping_) {
    co_return;
  }
  stopping_ = true;
  if (running_) {
    stop_->cancel();
    co_await done_->async_wait(use_tuple);
  }
  if (!started_) {
    co_return;
  }
  if (registered_) {
    co_await bounded_step("maintenance",
                          consul_.set_maintenance(service_id_, true, options_.maintenance_reason));
  }
  // Even when no registration was confirmed: one may have reached the agent with its
  // answer lost. Deregistering an unknown ID is harmless.
  co_await bounded_step("deregister", consul_.deregister_service(service_id_));
  registered_ = false;
}

asio::awaitable<void> Registrar::bounded_step(std::string step_name, asio::awaitable<void> step) {
  asio::steady_timer timer(co_await asio::this_coro::executor, options_.shutdown_step_timeout);
  auto result = co_await (outcome(std::move(step)) || timer.async_wait(use_tuple));
  if (result.index() == 1) {
    log::warn("consul.shutdown.error", {{"id", service_id_},
                                        {"step", step_name},
                                        {"error", "timed out"},
                                        {"timeout", options_.shutdown_step_timeout}});
  } else if (const auto& error = std::get<0>(result)) {
    log::warn("consul.shutdown.error",
              {{"id", service_id_}, {"step", step_name}, {"error", *error}});
  } else {
    log::info(step_name == "maintenance" ? "consul.maintenance" : "consul.deregistered",
              {{"id", service_id_}});
  }
}

}  // namespace coromesh::consul
