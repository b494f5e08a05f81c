// http::await_tls_context: the wait for this service's own certificate that the typed
// client (Connect-native) and the sidecar share before any handshake.

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <exception>
#include <thread>

#include "coromesh/http/tls.hpp"
#include "tls_fixture.hpp"

namespace coromesh::http::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

struct WaitEnd {
  bool done = false;
  std::exception_ptr error;
  std::shared_ptr<TlsContext> context;
  Clock::duration took{};
};

WaitEnd run_wait(asio::io_context& io, TlsContextProvider provider, Clock::time_point until,
                 asio::cancellation_slot slot = {}) {
  WaitEnd end;
  const auto started = Clock::now();
  asio::co_spawn(io, await_tls_context(std::move(provider), until),
                 asio::bind_cancellation_slot(
                     slot, [&](std::exception_ptr e, std::shared_ptr<TlsContext> context) {
                       end = {true, e, std::move(context), Clock::now() - started};
                     }));
  io.run_for(std::chrono::seconds(10));
  return end;
}

// The certificate source publishes on another thread (Consul's executor): a context that
// comes during the wait ends it, well before the bound.
TEST(AwaitTlsContext, AContextPublishedOnAnotherThreadDuringTheWaitEndsIt) {
  asio::io_context io;
  ContextSlot slot;
  const auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  std::thread publisher([&] {
    std::this_thread::sleep_for(milliseconds(100));
    slot.set(context);
  });
  const auto end = run_wait(
      io, [&slot] { return slot.get(); }, Clock::now() + std::chrono::seconds(5));
  publisher.join();
  ASSERT_TRUE(end.done) << "the wait did not end within 10s";
  ASSERT_FALSE(end.error);
  EXPECT_EQ(end.context, context);
  EXPECT_GE(end.took, milliseconds(100));
  EXPECT_LT(end.took, milliseconds(2000)) << "the wait outlasted the context's arrival";
}

// No context by the bound: null, at the bound, not an error (the caller names its fault).
TEST(AwaitTlsContext, NoContextByTheBoundIsNullAtTheBound) {
  asio::io_context io;
  int asked = 0;
  const auto end = run_wait(
      io,
      [&asked] {
        ++asked;
        return std::shared_ptr<TlsContext>();
      },
      Clock::now() + milliseconds(150));
  ASSERT_TRUE(end.done) << "the wait did not end within 10s";
  ASSERT_FALSE(end.error);
  EXPECT_EQ(end.context, nullptr);
  EXPECT_GE(end.took, milliseconds(150));
  EXPECT_LT(end.took, milliseconds(2000));
  EXPECT_GE(asked, 3) << "the provider was not asked again while waiting";
}

// A cancelled wait is the caller's cancellation, never "no certificate in time".
TEST(AwaitTlsContext, ACancelledWaitThrowsOperationAborted) {
  asio::io_context io;
  asio::cancellation_signal cancel;
  asio::steady_timer cancel_soon(io, milliseconds(50));
  cancel_soon.async_wait([&](auto) { cancel.emit(asio::cancellation_type::terminal); });
  const auto end = run_wait(
      io, [] { return std::shared_ptr<TlsContext>(); }, Clock::now() + std::chrono::seconds(5),
      cancel.slot());
  ASSERT_TRUE(end.done) << "the cancelled wait did not end within 10s";
  ASSERT_TRUE(end.error) << "a cancelled wait returned";
  try {
    std::rethrow_exception(end.error);
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), asio::error::operation_aborted) << e.what();
  }
  EXPECT_LT(end.took, milliseconds(2000));
}

}  // namespace
}  // namespace coromesh::http::testing
