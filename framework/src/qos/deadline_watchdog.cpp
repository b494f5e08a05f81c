#include "coromesh/qos/deadline_watchdog.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/strand.hpp>
#include <stdexcept>
#include <vector>

namespace coromesh::qos {

namespace asio = boost::asio;

std::atomic<std::uint64_t> DeadlineWatchdog::generation_{0};

// --- WatchedDeadline --------------------------------------------------------------------

namespace {

// Whether this thread's spares are destroyed (thread exit): a node destroyed after that
// (a frame torn down by a static io_context) deletes its signal instead. Trivially
// destructible, so it stays readable when the spares are gone.
constinit thread_local bool t_spares_gone = false;

// A thread's used cancellation signals, kept for the next WatchedDeadline made on it.
class SpareSignals {
 public:
  SpareSignals() = default;
  SpareSignals(const SpareSignals&) = delete;
  SpareSignals& operator=(const SpareSignals&) = delete;
  ~SpareSignals() {
    t_spares_gone = true;
    for (asio::cancellation_signal* signal : spares_) {
      delete signal;
    }
  }

  asio::cancellation_signal* take() {
    if (spares_.empty()) {
      return new asio::cancellation_signal;
    }
    asio::cancellation_signal* signal = spares_.back();
    spares_.pop_back();
    return signal;
  }

  void give_back(asio::cancellation_signal* signal) noexcept {
    // Beyond a burst's worth, let the memory go.
    if (spares_.size() >= kMaxSpares) {
      delete signal;
      return;
    }
    try {
      spares_.push_back(signal);
    } catch (...) {
      delete signal;
    }
  }

 private:
  static constexpr std::size_t kMaxSpares = 64;
  std::vector<asio::cancellation_signal*> spares_;
};

thread_local SpareSignals t_spares;

asio::cancellation_signal* take_signal() {
  return t_spares_gone ? new asio::cancellation_signal : t_spares.take();
}

void give_back_signal(asio::cancellation_signal* signal) noexcept {
  if (t_spares_gone) {
    delete signal;
  } else {
    t_spares.give_back(signal);
  }
}

}  // namespace

WatchedDeadline::WatchedDeadline(asio::io_context& io, time_point deadline)
    : deadline_(deadline), signal_(take_signal()) {
  try {
    DeadlineWatchdog::of(io).add(*this);
  } catch (...) {
    give_back_signal(signal_);
    throw;
  }
}

WatchedDeadline::~WatchedDeadline() {
  release();
  give_back_signal(signal_);
}

namespace {
asio::io_context& io_context_of(const asio::any_io_executor& executor) {
  if (const auto* direct = executor.target<asio::io_context::executor_type>()) {
    return direct->context();
  }
  if (const auto* strand = executor.target<asio::strand<asio::io_context::executor_type>>()) {
    return strand->get_inner_executor().context();
  }
  throw std::logic_error("deadline watchdog: the coroutine does not run on an io_context");
}
}  // namespace

WatchedDeadline::WatchedDeadline(const asio::any_io_executor& executor, time_point deadline)
    : WatchedDeadline(io_context_of(executor), deadline) {}

void WatchedDeadline::release() noexcept {
  if (watchdog_ != nullptr) {
    watchdog_->remove(*this);
  }
}

// --- DeadlineWatchdog -------------------------------------------------------------------

DeadlineWatchdog::DeadlineWatchdog(asio::io_context& io)
    : asio::execution_context::service(io), io_(io), timer_(io) {}

// The timer is destroyed here, while the context's timer service (created before this
// service, so destroyed after it) still exists.
DeadlineWatchdog::~DeadlineWatchdog() = default;

DeadlineWatchdog& DeadlineWatchdog::of(asio::io_context& io) {
  thread_local asio::io_context* cached_io = nullptr;
  thread_local DeadlineWatchdog* cached = nullptr;
  thread_local std::uint64_t cached_generation = 0;
  // A context destroyed since the cache was filled (a new one may sit at its address)
  // has bumped the generation.
  const std::uint64_t generation = generation_.load(std::memory_order_acquire);
  if (cached_io != &io || cached_generation != generation) {
    cached = &asio::use_service<DeadlineWatchdog>(io);
    cached_io = &io;
    cached_generation = generation;
  }
  return *cached;
}

void DeadlineWatchdog::shutdown() {
  // Runs before the context destroys the frames still suspended on it: detach their
  // nodes so that their destructors never reach this service, which is deleted first.
  shut_down_ = true;
  while (head_ != nullptr) {
    WatchedDeadline* node = head_;
    head_ = node->next_;
    node->watchdog_ = nullptr;
    node->prev_ = node->next_ = nullptr;
  }
  count_ = 0;
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void DeadlineWatchdog::add(WatchedDeadline& node) {
  if (shut_down_) {
    return;  // the context is going away: nothing will run long enough to time out
  }
  node.watchdog_ = this;
  node.prev_ = nullptr;
  node.next_ = head_;
  if (head_ != nullptr) {
    head_->prev_ = &node;
  }
  head_ = &node;
  ++count_;
  if (node.deadline_ < armed_for_) {
    arm(node.deadline_);
  }
}

void DeadlineWatchdog::remove(WatchedDeadline& node) noexcept {
  if (node.prev_ != nullptr) {
    node.prev_->next_ = node.next_;
  } else {
    head_ = node.next_;
  }
  if (node.next_ != nullptr) {
    node.next_->prev_ = node.prev_;
  }
  node.prev_ = node.next_ = nullptr;
  node.watchdog_ = nullptr;
  --count_;
}

void DeadlineWatchdog::arm(time_point earliest) {
  // Round up to the granularity: the calls of one burst share a tick, and a deadline
  // only a little earlier than the armed one does not re-arm.
  const auto granularity = std::chrono::duration_cast<time_point::duration>(kGranularity);
  const auto since_epoch = earliest.time_since_epoch();
  const time_point when((since_epoch + granularity - time_point::duration(1)) / granularity *
                        granularity);
  if (when >= armed_for_) {
    return;
  }
  armed_for_ = when;
  timer_.expires_at(when);  // a wait still pending completes with operation_aborted
  timer_.async_wait([this](const boost::system::error_code& error) {
    on_timer(error == asio::error::operation_aborted);
  });
  // The pending wait must not keep run() from returning: give back the work the timer
  // took (on_timer takes it again before its completion returns it).
  io_.get_executor().on_work_finished();
}

void DeadlineWatchdog::on_timer(bool aborted) {
  io_.get_executor().on_work_started();
  if (aborted || shut_down_) {
    return;  // replaced by an earlier wait, which is still pending
  }
  armed_for_ = time_point::max();
  const auto now = std::chrono::steady_clock::now();
  // Unlink the overdue calls first, then cancel them: a cancellation handler may run
  // code that registers or releases other calls.
  WatchedDeadline* overdue = nullptr;
  auto earliest = time_point::max();
  for (WatchedDeadline* node = head_; node != nullptr;) {
    WatchedDeadline* following = node->next_;
    if (node->deadline_ <= now) {
      remove(*node);
      node->expired_ = true;
      node->next_ = overdue;
      overdue = node;
    } else if (node->deadline_ < earliest) {
      earliest = node->deadline_;
    }
    node = following;
  }
  if (earliest != time_point::max()) {
    arm(earliest);
  }
  while (overdue != nullptr) {
    WatchedDeadline* node = overdue;
    overdue = node->next_;
    node->next_ = nullptr;
    node->signal_->emit(asio::cancellation_type::terminal);
  }
}

}  // namespace coromesh::qos
