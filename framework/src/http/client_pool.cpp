#include "client_pool.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <utility>

namespace coromesh::http::detail {
namespace {

// A cheap check before reusing a connection: a peer that closed an idle keep-alive
// connection has sent its FIN already, and recv() sees it without blocking. Catching it
// here saves a doomed write and a retry. Unsolicited bytes on an idle connection would
// be read as the next response, so such a connection is not reused either.
bool looks_alive(boost::beast::tcp_stream& stream) {
  auto& socket = stream.socket();
  if (!socket.is_open()) {
    return false;
  }
  char byte = 0;
  auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void close(boost::beast::tcp_stream& stream) {
  boost::system::error_code ignored;
  stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
  stream.socket().close(ignored);
}

}  // namespace

std::optional<boost::beast::tcp_stream> ClientPool::take(const std::string& key,
                                                         Clock::time_point now) {
  auto it = idle_.find(key);
  if (it == idle_.end()) {
    return std::nullopt;
  }
  auto& list = it->second;
  drop_expired(list, now);
  while (!list.empty()) {
    auto stream = std::move(list.back().stream);
    list.pop_back();
    --size_;
    if (looks_alive(stream)) {
      return stream;
    }
    close(stream);
  }
  return std::nullopt;
}

void ClientPool::put(const std::string& key, boost::beast::tcp_stream stream,
                     Clock::time_point now) {
  if (max_idle_ == 0) {
    close(stream);
    return;
  }
  auto& list = idle_[key];
  drop_expired(list, now);
  if (list.size() >= max_idle_) {
    close(list.front().stream);
    list.pop_front();
    --size_;
  }
  // A parked connection has no operation pending, so no deadline should fire on it.
  stream.expires_never();
  list.emplace_back(Idle{std::move(stream), now});
  ++size_;
}

void ClientPool::clear() {
  for (auto& [key, list] : idle_) {
    for (auto& idle : list) {
      close(idle.stream);
    }
  }
  idle_.clear();
  size_ = 0;
}

void ClientPool::drop_expired(std::deque<Idle>& list, Clock::time_point now) {
  // Oldest first: the expired ones form a prefix.
  while (!list.empty() && now - list.front().since >= idle_timeout_) {
    close(list.front().stream);
    list.pop_front();
    --size_;
  }
}

}  // namespace coromesh::http::detail
