#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include "coromesh/http/tls.hpp"

namespace coromesh::http {

namespace asio = boost::asio;

asio::awaitable<std::shared_ptr<TlsContext>> await_tls_context(
    TlsContextProvider provider, std::chrono::steady_clock::time_point until) {
  constexpr auto kPollInterval = std::chrono::milliseconds(20);
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  asio::steady_timer poll(co_await asio::this_coro::executor);
  auto context = provider();
  for (auto now = std::chrono::steady_clock::now(); !context && now < until;
       now = std::chrono::steady_clock::now()) {
    poll.expires_at(std::min(until, now + kPollInterval));
    const auto [ec] = co_await poll.async_wait(asio::as_tuple(asio::use_awaitable));
    // A cancellation that came as the timer fired is read here too: it is the caller's
    // cancellation, never "no certificate in time".
    if (ec == asio::error::operation_aborted ||
        cancellation.cancelled() != asio::cancellation_type::none) {
      throw boost::system::system_error(asio::error::operation_aborted);
    }
    context = provider();
  }
  co_return context;
}

}  // namespace coromesh::http
