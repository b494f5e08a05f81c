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
// Over TLS a peer's close_notify is such bytes too.
bool looks_alive(ClientConnection& connection) {
  auto& socket = connection.tcp().socket();
  if (!socket.is_open()) {
    return false;
  }
  char byte = 0;
  auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// Without close_notify: an idle connection has nothing the server could miss.
void close(ClientConnection& connection) {
  boost::system::error_code ignored;
  auto& socket = connection.tcp().socket();
  socket.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

}  // namespace

std::optional<ClientConnection> ClientPool::take(const std::string& key, Clock::time_point now) {
  auto it = idle_.find(key);
  if (it == idle_.end()) {
    return std::nullopt;
  }
  auto& list = it->second;
  drop_expired(list, now);
  while (!list.empty()) {
    auto connection = std::move(list.back().connection);
    list.pop_back();
    --size_;
    if (looks_alive(connection)) {
      return connection;
    }
    close(connection);
  }
  return std::nullopt;
}

void ClientPool::put(const std::string& key, ClientConnection connection, Clock::time_point now) {
  if (max_idle_ == 0) {
    close(connection);
    return;
  }
  auto& list = idle_[key];
  drop_expired(list, now);
  if (list.size() >= max_idle_) {
    close(list.front().connection);
    list.pop_front();
    --size_;
  }
  // A parked connection has no operation pending, so no deadline should fire on it.
  connection.tcp().expires_never();
  list.emplace_back(Idle{std::move(connection), now});
  ++size_;
}

void ClientPool::clear() {
  for (auto& [key, list] : idle_) {
    for (auto& idle : list) {
      close(idle.connection);
    }
  }
  idle_.clear();
  size_ = 0;
}

void ClientPool::clear(const std::string& key) {
  const auto it = idle_.find(key);
  if (it == idle_.end()) {
    return;
  }
  for (auto& idle : it->second) {
    close(idle.connection);
  }
  size_ -= it->second.size();
  idle_.erase(it);
}

void ClientPool::drop_expired(std::deque<Idle>& list, Clock::time_point now) {
  // Oldest first: the expired ones form a prefix.
  while (!list.empty() && now - list.front().since >= idle_timeout_) {
    close(list.front().connection);
    list.pop_front();
    --size_;
  }
}

}  // namespace coromesh::http::detail
