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
        bulkhead->reopen_if_idle_locked();
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

namespace {

// Small enough that the pool seldom runs dry while shards hold spare permits.
std::int64_t pool_batch_for(const BulkheadConfig& config, std::size_t shards) {
  return std::max<std::int64_t>(1, config.max_concurrent / static_cast<std::int64_t>(2 * shards));
}

}  // namespace

Bulkhead::Bulkhead(BulkheadConfig config)
    : config_(config),
      pool_batch_(pool_batch_for(config, kShards)),
      pooled_(config.max_concurrent) {
  if (auto error = validate(config_); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  if (config_.max_queue > 0) {
    // With a queue every permit goes through the lock.
    queued_.store(true, std::memory_order_relaxed);
    closed_ = true;
    for (auto& shard : shards_) {
      shard.free.store(-kClosed, std::memory_order_relaxed);
    }
  }
}

Bulkhead::~Bulkhead() = default;

Bulkhead::Permit Bulkhead::try_acquire() {
  const Admission admission = try_enter();
  return admission ? Permit(this) : Permit(admission.reason());
}

Admission Bulkhead::try_enter() {
  if (!queued_.load(std::memory_order_relaxed)) {
    // No queue can form: a permit from this thread's shard is the whole admission (a
    // closed shard is negative: the lock decides).
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
  if (pooled_ > 0 && queue_.empty()) {
    --pooled_;
    return Admission::granted();
  }
  return Admission::rejected(Reason::bulkhead_full);
}

Admission Bulkhead::enter_from_pool(std::atomic<std::int64_t>& own_free) {
  std::lock_guard lock(mutex_);
  if (!queue_.empty()) {
    // Waiters from a queued configuration go first (no barging).
    return Admission::rejected(Reason::bulkhead_full);
  }
  if (pooled_ > 0) {
    const std::int64_t taken = closed_ ? 1 : std::min(pooled_, pool_batch_);
    pooled_ -= taken;
    if (taken > 1) {
      own_free.fetch_add(taken - 1, std::memory_order_release);  // one is this call's
    }
    return Admission::granted();
  }
  if (closed_) {
    // A debt to retire (every free permit went to it) or a queue: nothing is free.
    return Admission::rejected(Reason::bulkhead_full);
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
  return acquire(Duration::max());
}

asio::awaitable<Bulkhead::Permit> Bulkhead::acquire(Duration wait_limit) {
  if (!queued_.load(std::memory_order_relaxed) || wait_limit <= Duration::zero()) {
    co_return try_acquire();
  }
  const auto executor = co_await asio::this_coro::executor;
  std::shared_ptr<Waiter> waiter;
  {
    std::lock_guard lock(mutex_);
    if (pooled_ > 0 && queue_.empty()) {
      --pooled_;
      co_return Permit(this);
    }
    const Duration wait = std::min(wait_limit, config_.max_wait);
    if (wait <= Duration::zero() || queue_.size() >= config_.max_queue) {
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
  reopen_if_idle_locked();
  co_return Permit(Reason::bulkhead_full);
}

void Bulkhead::release() noexcept {
  if (!queued_.load(std::memory_order_relaxed)) {
    // Kept by this thread for its next call; other threads take it when they run dry.
    auto& own_free = shards_[thread_shard() % kShards].free;
    if (own_free.fetch_add(1, std::memory_order_release) < 0) [[unlikely]] {
      reclaim(own_free);  // closed: a shrink retires it, or a waiter takes it
    }
    return;
  }
  Wakeups wake;
  {
    std::lock_guard lock(mutex_);
    give_back_locked(1, wake);
  }
  wake_all(wake);
}

void Bulkhead::reclaim(std::atomic<std::int64_t>& own_free) noexcept {
  Wakeups wake;
  {
    std::lock_guard lock(mutex_);
    if (!closed_) {
      return;  // reopened meanwhile: the permit is free in the open shard
    }
    // Whatever was given back to this shard since it closed (others' too: they then find
    // nothing, as each permit is counted by the exchange that takes it).
    const std::int64_t back = own_free.exchange(-kClosed, std::memory_order_acq_rel) + kClosed;
    give_back_locked(back, wake);
  }
  wake_all(wake);
}

void Bulkhead::give_back_locked(std::int64_t permits, Wakeups& wake) {
  const std::int64_t retired = std::min(permits, debt_);
  debt_ -= retired;
  permits -= retired;
  while (permits > 0 && !queue_.empty()) {
    // Hand the slot over: it stays held.
    auto next = std::move(queue_.front());
    queue_.pop_front();
    next->granted = true;
    wake.push_back(std::move(next));
    --permits;
  }
  pooled_ += permits;
  reopen_if_idle_locked();
}

void Bulkhead::close_shards_locked(Wakeups& wake) {
  if (closed_) {
    return;
  }
  closed_ = true;
  std::int64_t back = 0;
  for (auto& shard : shards_) {
    back += shard.free.exchange(-kClosed, std::memory_order_acq_rel);
  }
  give_back_locked(back, wake);
}

void Bulkhead::reopen_if_idle_locked() noexcept {
  if (!closed_ || config_.max_queue > 0 || debt_ > 0 || !queue_.empty()) {
    return;
  }
  closed_ = false;
  // What was given back to a closed shard meanwhile becomes free there; its giver then
  // finds the shards open in reclaim() and leaves it.
  for (auto& shard : shards_) {
    shard.free.fetch_add(kClosed, std::memory_order_acq_rel);
  }
}

void Bulkhead::wake_all(const Wakeups& wake) noexcept {
  for (const auto& next : wake) {
    // The timer belongs to the waiter's executor: cancel it there.
    asio::post(next->timer.get_executor(), [next] { next->timer.cancel(); });
  }
}

void Bulkhead::reconfigure(BulkheadConfig config) {
  if (auto error = validate(config); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  Wakeups wake;
  {
    std::lock_guard lock(mutex_);
    const auto before = static_cast<std::int64_t>(config_.max_concurrent);
    const auto after = static_cast<std::int64_t>(config.max_concurrent);
    config_ = config;
    pool_batch_ = pool_batch_for(config, kShards);
    queued_.store(config.max_queue > 0, std::memory_order_relaxed);
    if (after < before) {
      // Retire the surplus: free permits first, the rest as calls give theirs back.
      debt_ += before - after;
      const std::int64_t retired = std::min(pooled_, debt_);
      pooled_ -= retired;
      debt_ -= retired;
    }
    if (debt_ > 0 || config.max_queue > 0) {
      // Every permit now goes through the lock: none the shards hold can be reused.
      close_shards_locked(wake);
    }
    if (after > before) {
      give_back_locked(after - before, wake);  // retires debt first, then serves the queue
    }
    reopen_if_idle_locked();
  }
  wake_all(wake);
}

std::uint32_t Bulkhead::in_use() const {
  std::lock_guard lock(mutex_);
  // A snapshot: calls on other threads may take or give back permits while it sums.
  std::int64_t free = pooled_;
  for (const auto& shard : shards_) {
    free += shard.free.load(std::memory_order_relaxed) + (closed_ ? kClosed : 0);
  }
  const std::int64_t permits = static_cast<std::int64_t>(config_.max_concurrent) + debt_;
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(permits - free, 0, permits));
}

std::size_t Bulkhead::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

BulkheadConfig Bulkhead::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

}  // namespace coromesh::qos
