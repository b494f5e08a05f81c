#pragma once

// The accept loop of both listeners (inbound and upstream): connections spread round
// robin over the io threads, and a burst taken from the backlog in batches.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <functional>

#include "coromesh/runtime/io_pool.hpp"

namespace coromesh::sidecar {

// At most this many connections are taken from the backlog per trip through the
// accepting thread's queue (http::Server's batch, for the same reason).
inline constexpr std::size_t kAcceptBatch = 64;

struct AcceptHandlers {
  // A new connection, whose socket's executor is the pool's thread `thread`.
  std::function<void(boost::asio::ip::tcp::socket socket, std::size_t thread)> admit;
  // A failed accept (EMFILE and friends): the loop pauses 50 ms, then goes on.
  std::function<void(const boost::system::error_code& error)> failed;
};

// Accepts on `acceptor` until it is closed. After each asynchronous accept, the
// connections already waiting in the backlog (up to kAcceptBatch) are taken with
// non-blocking accepts: one asynchronous accept each would cost a trip through the
// accepting thread's whole queue, and a flood of connects then overflowed the kernel's
// accept queue, where new connections (Consul's TCP check of this port among them) wait
// for a SYN retransmission.
//
// `acceptor` and `pool` must outlive the returned coroutine: the listener that owns the
// acceptor keeps itself alive across it.
boost::asio::awaitable<void> accept_connections(boost::asio::ip::tcp::acceptor& acceptor,
                                                runtime::IoPool& pool, AcceptHandlers handlers);

}  // namespace coromesh::sidecar
