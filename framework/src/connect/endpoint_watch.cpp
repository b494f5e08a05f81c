#include "coromesh/connect/endpoint_watch.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <exception>
#include <optional>
#include <utility>

#include "coromesh/log/logger.hpp"

namespace coromesh::connect {

namespace asio = boost::asio;

EndpointWatch::EndpointWatch(consul::AgentClient& consul, std::string service,
                             consul::WatchOptions options, EndpointKind kind,
                             std::chrono::milliseconds restart_grace)
    : consul_(consul),
      service_(std::move(service)),
      options_(options),
      kind_(kind),
      restart_grace_(restart_grace) {}

EndpointWatch::~EndpointWatch() {
  // Only reached with waiters left when the owner broke the contract (destroyed it while
  // ready() was pending, run() never started): their handlers must still be completed,
  // and a failed ready() touches nothing of this object when it resumes.
  wake_waiters(asio::error::operation_aborted);
}

asio::awaitable<void> EndpointWatch::run() {
  // On every way out (cancellation, a throwing callback): nobody waits forever.
  struct StopWaiters {
    EndpointWatch& watch;
    ~StopWaiters() {
      {
        std::lock_guard lock(watch.waiters_mutex_);
        watch.stopped_ = true;
      }
      watch.wake_waiters(asio::error::operation_aborted);
    }
  } stop_waiters{*this};
  // The grace timer lives in this frame, so nothing outlives it; the member pointer to
  // it is cleared on every way out, before the frame goes.
  asio::steady_timer grace_timer(co_await asio::this_coro::executor,
                                 asio::steady_timer::time_point::max());
  struct ForgetTimer {
    EndpointWatch& watch;
    ~ForgetTimer() {
      watch.grace_timer_ = nullptr;
      watch.hold_until_.reset();
    }
  } forget_timer{*this};
  grace_timer_ = &grace_timer;
  consul::InstancesCallback on_change =
      [this](const std::vector<consul::ServiceInstance>& instances,
             consul::WatchDelivery delivery) { on_answer(instances, delivery); };
  auto answers = kind_ == EndpointKind::plain
                     ? consul::watch_health_service(consul_, service_, /*passing_only=*/true,
                                                    std::move(on_change), options_)
                     : consul::watch_health_connect(consul_, service_, /*passing_only=*/true,
                                                    std::move(on_change), options_);
  // Both end together: cancelling run() cancels both, and `||` cancels the other one.
  using namespace asio::experimental::awaitable_operators;
  co_await (std::move(answers) || expire_holds(grace_timer));
}

void EndpointWatch::on_answer(const std::vector<consul::ServiceInstance>& instances,
                              consul::WatchDelivery delivery) {
  auto current = snapshot();
  if (instances.empty() && current && !current->empty()) {
    auto now = std::chrono::steady_clock::now();
    if (!hold_until_ && delivery.after_disruption) {
      hold_until_ = now + restart_grace_;
      grace_timer_->expires_at(*hold_until_);
      log::warn("connect.endpoints.held", {{"service", service_},
                                           {"endpoints", current->size()},
                                           {"grace", restart_grace_},
                                           {"why", "empty answer right after an agent outage"}});
      return;
    }
    if (hold_until_ && now < *hold_until_) {
      return;  // still empty, still within the grace: keep the last endpoints
    }
  }
  if (hold_until_) {
    hold_until_.reset();
    grace_timer_->expires_at(asio::steady_timer::time_point::max());
  }
  publish(instances);
}

asio::awaitable<void> EndpointWatch::expire_holds(asio::steady_timer& grace_timer) {
  for (;;) {
    // on_answer() moving the expiry ends this wait early (operation_aborted): look again.
    co_await grace_timer.async_wait(asio::as_tuple(asio::use_awaitable));
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) {
      co_return;
    }
    if (hold_until_ && std::chrono::steady_clock::now() >= *hold_until_) {
      hold_until_.reset();
      grace_timer.expires_at(asio::steady_timer::time_point::max());
      log::warn("connect.endpoints.hold_expired",
                {{"service", service_}, {"grace", restart_grace_}});
      publish({});
    }
  }
}

void EndpointWatch::publish(const std::vector<consul::ServiceInstance>& instances) {
  auto next = make_endpoint_set(service_, instances, generation_ + 1);
  auto current = snapshot();
  // Consul's index moves for changes we do not keep (a check's output, another
  // instance's tags): the same endpoints are not a new snapshot, so readers and
  // balancers keyed on the snapshot are not disturbed.
  if (current && current->endpoints == next.endpoints) {
    return;
  }
  ++generation_;
  log::info("connect.endpoints",
            {{"service", service_}, {"endpoints", next.size()}, {"generation", generation_}});
  auto previous = snapshot_.exchange(std::make_shared<const EndpointSet>(std::move(next)));
  if (!previous) {
    wake_waiters({});
  }
}

asio::awaitable<EndpointWatch::Snapshot> EndpointWatch::ready_until(
    std::chrono::steady_clock::time_point until) {
  using namespace asio::experimental::awaitable_operators;
  if (auto now = snapshot()) {
    co_return now;
  }
  // ready()'s failure (the watch ended) comes back as a value: `||` waits for the first
  // *success*, and would otherwise hold the caller until `until`, then return null as if
  // Consul had not answered in time.
  struct Answer {
    Snapshot snapshot;
    std::exception_ptr failure;
  };
  auto answer = [this]() -> asio::awaitable<Answer> {
    try {
      co_return Answer{co_await ready(), nullptr};
    } catch (const boost::system::system_error&) {
      co_return Answer{nullptr, std::current_exception()};
    }
  };
  asio::steady_timer give_up(co_await asio::this_coro::executor, until);
  auto first = co_await (answer() || give_up.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (first.index() == 0) {
    auto ready_answer = std::get<0>(std::move(first));
    if (ready_answer.failure) {
      std::rethrow_exception(ready_answer.failure);
    }
    co_return std::move(ready_answer.snapshot);
  }
  // A cancellation ends the timer too, aborted: that is the caller's cancellation, not
  // Consul failing to answer in time.
  if (const auto [ec] = std::get<1>(first); ec == asio::error::operation_aborted) {
    throw boost::system::system_error(ec);
  }
  co_return nullptr;
}

asio::awaitable<EndpointWatch::Snapshot> EndpointWatch::ready() {
  if (auto now = snapshot()) {
    co_return now;
  }
  // Registered under the lock that publish()'s wake-up takes, after re-checking the
  // snapshot: an answer that lands in between cannot be missed.
  auto initiate = [this](auto handler) {
    auto executor = asio::get_associated_executor(handler);
    // The type-erased handler carries the waiter's cancellation slot on; the cancellation
    // handler goes on that slot (the original one is now the erased handler's).
    ReadyHandler erased(std::move(handler));
    auto slot = erased.get_cancellation_slot();
    std::unique_lock lock(waiters_mutex_);
    if (snapshot() || stopped_) {
      boost::system::error_code ec;
      if (!snapshot()) {
        ec = asio::error::operation_aborted;
      }
      lock.unlock();
      complete(Waiter{0, executor, std::move(erased)}, ec);
      return;
    }
    auto id = ++next_waiter_id_;
    if (slot.is_connected()) {
      slot.assign([this, id](asio::cancellation_type) { cancel_waiter(id); });
    }
    waiters_.push_back(Waiter{id, executor, std::move(erased)});
  };
  auto token = asio::as_tuple(asio::use_awaitable);
  auto [ec] = co_await asio::async_initiate<decltype(token), void(boost::system::error_code)>(
      initiate, token);
  if (ec) {
    throw boost::system::system_error(ec, "EndpointWatch::ready");
  }
  co_return snapshot();
}

void EndpointWatch::wake_waiters(boost::system::error_code ec) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(waiters_mutex_);
    waiters.swap(waiters_);
  }
  for (auto& waiter : waiters) {
    complete(std::move(waiter), ec);
  }
}

// Posted, never called inline: the waiter resumes on its own executor, outside any lock.
// (Through the executor saved at registration: Boost 1.81 cannot post to the type-erased
// handler's own associated executor.)
void EndpointWatch::complete(Waiter waiter, boost::system::error_code ec) {
  asio::post(waiter.executor,
             [handler = std::move(waiter.handler), ec]() mutable { std::move(handler)(ec); });
}

void EndpointWatch::cancel_waiter(std::uint64_t id) {
  std::optional<Waiter> cancelled;
  {
    std::lock_guard lock(waiters_mutex_);
    auto it = std::find_if(waiters_.begin(), waiters_.end(),
                           [id](const Waiter& waiter) { return waiter.id == id; });
    if (it == waiters_.end()) {
      return;  // already woken: its completion is on its way
    }
    cancelled = std::move(*it);
    waiters_.erase(it);
  }
  complete(std::move(*cancelled), asio::error::operation_aborted);
}

}  // namespace coromesh::connect
