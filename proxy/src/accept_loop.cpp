#include "accept_loop.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <utility>

namespace coromesh::sidecar {

namespace asio = boost::asio;

asio::awaitable<void> accept_connections(asio::ip::tcp::acceptor& acceptor, runtime::IoPool& pool,
                                         AcceptHandlers handlers) {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  // For the batch's plain accepts; the asynchronous accept is unaffected by this flag.
  boost::system::error_code ignored;
  acceptor.non_blocking(true, ignored);
  std::size_t next_thread = 0;
  while (acceptor.is_open()) {
    std::size_t thread = next_thread++ % pool.size();
    auto [ec, socket] = co_await acceptor.async_accept(pool.executor(thread), use_tuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      co_return;
    }
    if (ec) {
      handlers.failed(ec);
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    handlers.admit(std::move(socket), thread);
    // A failure here (would_block: the backlog is empty; EMFILE) ends the batch; the next
    // asynchronous accept reports a real one.
    for (std::size_t taken = 1; taken < kAcceptBatch && acceptor.is_open(); ++taken) {
      thread = next_thread % pool.size();
      boost::system::error_code batch_error;
      auto more = acceptor.accept(pool.executor(thread), batch_error);
      if (batch_error) {
        break;
      }
      ++next_thread;
      handlers.admit(std::move(more), thread);
    }
  }
}

}  // namespace coromesh::sidecar
