#pragma once

// Name resolution for http::Client's new connections, answering its caller's cancellation
// and its connect deadline at once. Private to the http module.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <optional>
#include <utility>

#include "coromesh/http/client.hpp"

namespace coromesh::http::detail {

using ResolveAnswer =
    std::pair<boost::system::error_code, boost::asio::ip::tcp::resolver::results_type>;

// Resolves `destination` by `until`: its answer (an error included), or nullopt when
// `until` came first. Throws operation_aborted at once when the awaiting coroutine is
// cancelled, whether or not getaddrinfo() is still running (see client_resolve.cpp).
boost::asio::awaitable<std::optional<ResolveAnswer>> resolve_until(
    const Destination& destination, std::chrono::steady_clock::time_point until);

}  // namespace coromesh::http::detail
