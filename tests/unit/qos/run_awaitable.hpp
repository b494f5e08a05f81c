#pragma once

// For the QoS unit tests: runs a coroutine to completion on an io_context.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <utility>

namespace coromesh::qos::test_support {

// Runs `work` on `io` until everything queued is done; returns its result (or throws).
template <class T>
T run(boost::asio::io_context& io, boost::asio::awaitable<T> work) {
  auto future = boost::asio::co_spawn(io, std::move(work), boost::asio::use_future);
  io.run();
  io.restart();
  return future.get();
}

}  // namespace coromesh::qos::test_support
