#include "handshake_limit.hpp"

#include <boost/asio/post.hpp>

namespace coromesh::sidecar {

HandshakeLimit::Slot::~Slot() {
  const std::lock_guard lock(limit_->mutex_);
  entry_->shed = nullptr;  // a shed already posted finds nothing to close
  if (entry_->listed) {
    limit_->entries_.erase(position_);
  }
}

std::unique_ptr<HandshakeLimit::Slot> HandshakeLimit::enter(boost::asio::any_io_executor executor,
                                                            std::function<void()> shed,
                                                            std::size_t* shed_count) {
  auto entry = std::make_shared<Entry>(Entry{std::move(executor), std::move(shed)});
  std::shared_ptr<Entry> oldest;
  std::unique_ptr<Slot> slot;
  {
    const std::lock_guard lock(mutex_);
    if (entries_.size() >= capacity_) {
      oldest = entries_.front();
      oldest->listed = false;
      entries_.pop_front();
    }
    entries_.push_back(entry);
    slot = std::make_unique<Slot>(*this, std::move(entry), std::prev(entries_.end()));
  }
  if (shed_count != nullptr) {
    *shed_count = oldest ? 1 : 0;
  }
  if (oldest) {
    boost::asio::post(oldest->executor, [this, oldest] {
      std::function<void()> close;
      {
        const std::lock_guard lock(mutex_);
        close = oldest->shed;
      }
      if (close) {
        close();  // on the handshake's own thread, while its frame still exists
      }
    });
  }
  return slot;
}

std::size_t HandshakeLimit::in_flight() const {
  const std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace coromesh::sidecar
