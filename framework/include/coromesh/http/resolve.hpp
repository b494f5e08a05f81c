#pragma once

// Name resolution that answers its caller's cancellation and a deadline at once, for
// whoever dials a host that may be a name: http::Client's new connections, and
// coromesh-sidecar's tcp-mode upstreams (Consul takes any name as a service's Address).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace coromesh::http {

using ResolveAnswer =
    std::pair<boost::system::error_code, boost::asio::ip::tcp::resolver::results_type>;

// The addresses of `host`:`port`: an IP literal as it is, at once; a name resolved by
// `until`. Returns the answer (a lookup error included), or nullopt when `until` came
// first. Throws operation_aborted at once when the awaiting coroutine is cancelled,
// whether or not getaddrinfo() is still running (see resolve.cpp).
boost::asio::awaitable<std::optional<ResolveAnswer>> resolve_until(
    std::string host, std::uint16_t port, std::chrono::steady_clock::time_point until);

}  // namespace coromesh::http
