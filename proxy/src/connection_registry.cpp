#include "connection_registry.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "coromesh/log/logger.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;

void post_close(std::mutex& mutex, std::shared_ptr<CloseHandle> handle) {
  auto executor = handle->executor;
  asio::post(executor, [&mutex, handle = std::move(handle)] {
    std::function<void()> close;
    {
      const std::lock_guard lock(mutex);
      close = handle->close;
    }
    if (close) {
      close();  // on the connection's own thread, while its frame still exists
    }
  });
}

ConnectionRegistry::Ticket::~Ticket() {
  const std::lock_guard lock(registry_->mutex_);
  (*entry_)->close = nullptr;  // a cut-off already posted finds nothing to close
  (*entry_)->drain = nullptr;
  registry_->entries_.erase(entry_);
}

std::unique_ptr<ConnectionRegistry::Ticket> ConnectionRegistry::enter(
    asio::any_io_executor executor, std::function<void()> close, std::function<void()> drain,
    const void* listener) {
  auto entry = std::make_shared<Entry>();
  entry->executor = std::move(executor);
  entry->close = std::move(close);
  entry->drain = std::move(drain);
  entry->listener = listener;
  const std::lock_guard lock(mutex_);
  entries_.push_front(entry);
  // Accepted before the listener closed, entering after the drain began: ended as the
  // connections already here were (they run once this coroutine next waits).
  if (cut_) {
    post_close(mutex_, entry);
  } else if (draining_ && entry->drain) {
    post_drain(entry);
  }
  return std::make_unique<Ticket>(*this, entries_.begin());
}

std::size_t ConnectionRegistry::active() const {
  const std::lock_guard lock(mutex_);
  return entries_.size() + admitted_.load();
}

void ConnectionRegistry::post_drain(std::shared_ptr<Entry> entry) {
  auto executor = entry->executor;
  // The registry outlives the io threads (sidecar_context.hpp); the entry is held here.
  asio::post(executor, [this, entry = std::move(entry)] {
    std::function<void()> drain;
    {
      const std::lock_guard lock(mutex_);
      drain = entry->drain;
    }
    if (drain) {
      drain();  // on the connection's own thread, while its frame still exists
    }
  });
}

void ConnectionRegistry::post_drains(const void* only) {
  for (const auto& entry : entries_) {
    if (!entry->drain || (only != nullptr && entry->listener != only)) {
      continue;
    }
    post_drain(entry);
  }
}

void ConnectionRegistry::begin_drain() {
  const std::lock_guard lock(mutex_);  // one step: an entry is drained here or by enter()
  draining_ = true;
  post_drains(nullptr);
}

void ConnectionRegistry::begin_drain(const void* listener) {
  if (listener != nullptr) {
    const std::lock_guard lock(mutex_);
    post_drains(listener);
  }
}

std::size_t ConnectionRegistry::cut_off() {
  const std::lock_guard lock(mutex_);
  cut_ = true;
  for (const auto& entry : entries_) {
    post_close(mutex_, entry);
  }
  return entries_.size();
}

asio::awaitable<std::size_t> ConnectionRegistry::drain(
    std::chrono::steady_clock::time_point deadline) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto poll = std::chrono::milliseconds(20);
  while (active() > 0 && std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(poll);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  const std::size_t cut = active() > 0 ? cut_off() : 0;
  // Closed sockets end their pumps at once; give the frames a moment to unwind so that
  // the shutdown log counts them gone.
  for (int i = 0; i < 50 && active() > 0; ++i) {
    timer.expires_after(poll);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (const auto left = active(); left > 0) {
    // Something a cut-off cannot reach (every wait of a connection is meant to race it):
    // torn down with the io pool, not ended in order.
    log::warn("sidecar.drain.unfinished", {{"connections", left}});
  }
  co_return cut;
}

}  // namespace coromesh::sidecar
