#pragma once

// A call for chain tests that fails a set number of times with a retryable fault (a reset
// connection, whose what() is "boom"), then returns 42.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include "coromesh/qos/chain.hpp"

namespace coromesh::qos::testing {

struct Boom : boost::system::system_error {
  Boom() : boost::system::system_error(boost::asio::error::connection_reset) {}
  const char* what() const noexcept override { return "boom"; }
};

// Fails the first `failures` calls with Boom, then returns 42.
struct Script {
  int calls = 0;
  int failures = 0;
};

inline boost::asio::awaitable<int> scripted(Script& script) {
  ++script.calls;
  if (script.calls <= script.failures) {
    throw Boom();
  }
  co_return 42;
}

inline Chain<int>::Call scripted_call(Script& script) {
  return [&script] { return scripted(script); };
}

}  // namespace coromesh::qos::testing
