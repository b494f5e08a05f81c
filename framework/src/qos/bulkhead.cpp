#include "coromesh/qos/bulkhead.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <string>
#include <utility>

namespace coromesh::qos {

namespace asio = boost::asio;

struct Bulkhead::Waiter {
  explicit Waiter(const asio::any_io_executor& executor) : timer(executor) {}
  asio::steady_timer timer;
  bool granted = false;  // guarded by Bulkhead::mutex_
};

// Keeps the queue honest if the waiting coroutine is destroyed without resuming.
struct Bulkhead::WaitGuard {
  Bulkhead* bulkhead;
  std::shared_ptr<Waiter> waiter;
  bool settled = false;

  WaitGuard(Bulkhead* b, std::shared_ptr<Waiter> w) : bulkhead(b), waiter(std::move(w)) {}
  WaitGuard(const WaitGuard&) = delete;
  WaitGuard& operator=(const WaitGuard&) = delete;
  ~WaitGuard() {
    if (settled) {
      return;
    }
    bool give_back = false;
    {
      std::lock_guard lock(bulkhead->mutex_);
      if (waiter->granted) {
        give_back = true;
      } else {
        std::erase(bulkhead->queue_, waiter);
      }
    }
    if (give_back) {
      bulkhead->release();
    }
  }
};

Bulkhead::Permit::Permit(Permit&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), reason_(other.reason_) {}

Bulkhead::Permit& Bulkhead::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::exchange(other.owner_, nullptr);
    reason_ = other.reason_;
  }
  return *this;
}

void Bulkhead::Permit::release() noexcept {
  if (auto* owner = std::exchange(owner_, nullptr)) {
    owner->release();
  }
}

Bulkhead::Bulkhead(BulkheadConfig config) : config_(config) {
  if (auto error = validate(config_); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
}

Bulkhead::~Bulkhead() = default;

Bulkhead::Permit Bulkhead::try_acquire() {
  const Admission admission = try_enter();
  return admission ? Permit(this) : Permit(admission.reason());
}

Admission Bulkhead::try_enter() {
  if (config_.max_queue == 0) {
    // No queue can ever form: a bounded increment is the whole admission.
    std::uint32_t current = in_use_.load(std::memory_order_relaxed);
    while (current < config_.max_concurrent) {
      if (in_use_.compare_exchange_weak(current, current + 1, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        return Admission::granted();
      }
    }
    return Admission::rejected(Reason::bulkhead_full);
  }
  std::lock_guard lock(mutex_);
  if (in_use_ < config_.max_concurrent && queue_.empty()) {
    ++in_use_;
    return Admission::granted();
  }
  return Admission::rejected(Reason::bulkhead_full);
}

asio::awaitable<Bulkhead::Permit> Bulkhead::acquire() {
  return acquire(config_.max_wait);
}

asio::awaitable<Bulkhead::Permit> Bulkhead::acquire(Duration wait_limit) {
  const Duration wait = std::min(wait_limit, config_.max_wait);
  if (config_.max_queue == 0 || wait <= Duration::zero()) {
    co_return try_acquire();
  }
  const auto executor = co_await asio::this_coro::executor;
  std::shared_ptr<Waiter> waiter;
  {
    std::lock_guard lock(mutex_);
    if (in_use_ < config_.max_concurrent && queue_.empty()) {
      ++in_use_;
      co_return Permit(this);
    }
    if (queue_.size() >= config_.max_queue) {
      co_return Permit(Reason::bulkhead_full);
    }
    waiter = std::make_shared<Waiter>(executor);
    waiter->timer.expires_after(wait);
    queue_.push_back(waiter);
  }
  WaitGuard guard(this, waiter);
  const auto token = asio::as_tuple(asio::use_awaitable);
  auto result = co_await waiter->timer.async_wait(token);
  (void)result;  // expiry and cancellation are told apart by `granted`, under the lock
  std::lock_guard lock(mutex_);
  guard.settled = true;
  if (waiter->granted) {
    co_return Permit(this);
  }
  std::erase(queue_, waiter);
  co_return Permit(Reason::bulkhead_full);
}

void Bulkhead::release() noexcept {
  if (config_.max_queue == 0) {
    std::uint32_t current = in_use_.load(std::memory_order_relaxed);
    while (current > 0 &&
           !in_use_.compare_exchange_weak(current, current - 1, std::memory_order_release,
                                          std::memory_order_relaxed)) {
    }
    return;
  }
  std::shared_ptr<Waiter> next;
  {
    std::lock_guard lock(mutex_);
    if (queue_.empty()) {
      if (in_use_ > 0) {
        --in_use_;
      }
      return;
    }
    // Hand the slot over: in_use_ stays the same.
    next = std::move(queue_.front());
    queue_.pop_front();
    next->granted = true;
  }
  // The timer belongs to the waiter's executor: cancel it there.
  auto wake = [next] { next->timer.cancel(); };
  asio::post(next->timer.get_executor(), std::move(wake));
}

std::uint32_t Bulkhead::in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

std::size_t Bulkhead::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

}  // namespace coromesh::qos
