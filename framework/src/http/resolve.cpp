#include "coromesh/http/resolve.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <memory>
#include <string>

namespace coromesh::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One name resolution in flight, owned by its own completion handler: Asio's resolver runs
// getaddrinfo() on a private thread and can neither cancel it nor complete before it
// returns (a cancellation only turns its eventual result into operation_aborted). A call
// that waited for it would answer its caller's cancellation, or its own deadline, only
// once the lookup gave up (seconds, with a name server that does not answer). So the
// call waits on `wake` instead, and the lookup, abandoned, ends on its own without
// touching the call's frame.
struct PendingResolution {
  explicit PendingResolution(const asio::any_io_executor& executor)
      : resolver(executor), wake(executor) {}
  tcp::resolver resolver;
  asio::steady_timer wake;  // cancelled when the answer is in
  std::optional<ResolveAnswer> answer;
};

}  // namespace

asio::awaitable<std::optional<ResolveAnswer>> resolve_until(
    std::string host, std::uint16_t port, std::chrono::steady_clock::time_point until) {
  error_code not_literal;
  const auto address = asio::ip::make_address(host, not_literal);
  if (!not_literal) {
    co_return ResolveAnswer{{},
                            tcp::resolver::results_type::create(tcp::endpoint(address, port), host,
                                                                std::to_string(port))};
  }
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  auto pending = std::make_shared<PendingResolution>(co_await asio::this_coro::executor);
  pending->wake.expires_at(until);
  pending->resolver.async_resolve(host, std::to_string(port),
                                  [pending](error_code ec, tcp::resolver::results_type results) {
                                    if (ec != asio::error::operation_aborted) {
                                      pending->answer.emplace(ec, std::move(results));
                                    }
                                    pending->wake.cancel();
                                  });
  const auto [woken] = co_await pending->wake.async_wait(use_tuple);
  if (pending->answer) {
    co_return std::move(pending->answer);
  }
  pending->resolver.cancel();  // its answer, when getaddrinfo() returns, is dropped
  if (woken == asio::error::operation_aborted ||
      cancellation.cancelled() != asio::cancellation_type::none) {
    throw boost::system::system_error(asio::error::operation_aborted);
  }
  co_return std::nullopt;
}

}  // namespace coromesh::http
