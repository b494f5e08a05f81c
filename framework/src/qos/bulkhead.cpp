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

#include "coromesh/qos/thread_shard.hpp"

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

Bulkhead::Bulkhead(BulkheadConfig config)
    : config_(config),
      // Small enough that the pool seldom runs dry while shards hold spare permits.
      pool_batch_(std::max<std::int64_t>(1, config.max_concurrent / (2 * kShards))),
      pooled_(config.max_concurrent) {
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
    // No queue can ever form: a permit from this thread's shard is the whole admission.
    auto& own_free = shards_[thread_shard() % kShards].free;
    std::int64_t free = own_free.load(std::memory_order_relaxed);
    while (free > 0) {
      if (own_free.compare_exchange_weak(free, free - 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
        return Admission::granted();
      }
    }
    return enter_from_pool(own_free);
  }
  std::lock_guard lock(mutex_);
  if (in_use_ < config_.max_concurrent && queue_.empty()) {
    ++in_use_;
    return Admission::granted();
  }
  return Admission::rejected(Reason::bulkhead_full);
}

Admission Bulkhead::enter_from_pool(std::atomic<std::int64_t>& own_free) {
  std::lock_guard lock(mutex_);
  if (pooled_ > 0) {
    const std::int64_t taken = std::min(pooled_, pool_batch_);
    pooled_ -= taken;
    if (taken > 1) {
      own_free.fetch_add(taken - 1, std::memory_order_release);  // one is this call's
    }
    return Admission::granted();
  }
  // The pool is dry: the free permits are in shards, kept by the threads that released
  // them. Take a whole shard's (this thread's too: a release may have just landed there).
  for (auto& shard : shards_) {
    const std::int64_t free = shard.free.exchange(0, std::memory_order_acquire);
    if (free > 0) {
      own_free.fetch_add(free - 1, std::memory_order_release);
      return Admission::granted();
    }
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
    // Kept by this thread for its next call; other threads take it when they run dry.
    shards_[thread_shard() % kShards].free.fetch_add(1, std::memory_order_release);
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
  if (config_.max_queue > 0) {
    return in_use_;
  }
  // A snapshot: calls on other threads may take or give back permits while it sums.
  std::int64_t free = pooled_;
  for (const auto& shard : shards_) {
    free += shard.free.load(std::memory_order_relaxed);
  }
  const std::int64_t held = static_cast<std::int64_t>(config_.max_concurrent) - free;
  return static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(held, 0, static_cast<std::int64_t>(config_.max_concurrent)));
}

std::size_t Bulkhead::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

}  // namespace coromesh::qos
