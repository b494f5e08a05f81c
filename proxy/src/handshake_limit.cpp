#include "handshake_limit.hpp"

namespace coromesh::sidecar {

HandshakeLimit::Slot::~Slot() {
  const std::lock_guard lock(limit_->mutex_);
  entry_->handle.close = nullptr;  // a shed already posted finds nothing to close
  if (entry_->listed) {
    limit_->entries_.erase(position_);
  }
}

std::unique_ptr<HandshakeLimit::Slot> HandshakeLimit::enter(boost::asio::any_io_executor executor,
                                                            std::function<void()> shed,
                                                            std::size_t* shed_count) {
  auto entry = std::make_shared<Entry>(Entry{{std::move(executor), std::move(shed)}});
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
    post_close(mutex_, std::shared_ptr<CloseHandle>(oldest, &oldest->handle));
  }
  return slot;
}

std::size_t HandshakeLimit::in_flight() const {
  const std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace coromesh::sidecar
