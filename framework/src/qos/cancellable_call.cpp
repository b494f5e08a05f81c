#include "coromesh/qos/cancellable_call.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/version.hpp>
#include <utility>

// The child thread is started with Asio's detail::awaitable_thread, as asio::co_spawn
// does internally (constructor: entry-point awaitable, executor, parent cancellation
// slot, cancellation state; then launch()). That interface has been stable since Boost
// 1.80; check it again before allowing a newer Boost here.
static_assert(BOOST_VERSION >= 108000 && BOOST_VERSION < 108700,
              "CancellableCall uses asio::detail::awaitable_thread: re-check it for this Boost");

namespace coromesh::qos {

namespace asio = boost::asio;
using Executor = asio::any_io_executor;

// Lives in the child's entry frame: tells the parent how the child ended.
CancellableCall::Link::~Link() {
  if (CancellableCall* call = std::exchange(parent_, nullptr)) {
    auto waiter = std::exchange(call->waiter_, std::nullopt);
    // `waiter` (and with it the waiting coroutine) is destroyed here, after the
    // parent's state is no longer touched.
  }
}

void CancellableCall::Link::finish(std::exception_ptr error) {
  CancellableCall* call = std::exchange(parent_, nullptr);
  call->error_ = std::move(error);
  call->finished_ = true;
  call->cancelled_ = call->state_.cancelled() != asio::cancellation_type::none;
  if (call->waiter_) {
    // The parent is suspended in wait(): resume it through the executor, never
    // inline (this frame is still on the stack).
    auto waiter = std::move(*call->waiter_);
    call->waiter_.reset();
    asio::post(*call->executor_, std::move(waiter));
  }
}

void CancellableCall::start(asio::awaitable<void> call, asio::cancellation_slot slot) {
  start_entry(child_entry(std::move(call), this), slot);
}

void CancellableCall::start_entry(Entry entry, asio::cancellation_slot slot) {
  state_ = asio::cancellation_state(slot);
  asio::detail::awaitable_thread<Executor> thread(std::move(entry), *executor_, slot, state_);
  // Runs the child until it completes or suspends; a suspended child's thread moves into
  // the handler of the operation it waits for.
  thread.launch();
}

asio::awaitable<void> CancellableCall::wait(asio::cancellation_signal& forward) {
  if (finished_) {
    co_return;
  }
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
      [this, &forward](auto waiter) { park(std::move(waiter), forward); }, asio::use_awaitable);
}

void CancellableCall::park(asio::any_completion_handler<void()> waiter,
                           asio::cancellation_signal& forward) {
  if (finished_) {
    asio::post(*executor_, std::move(waiter));  // finished between wait() and here
    return;
  }
  waiter_.emplace(std::move(waiter));
  // The type-erased handler keeps a cancellation state of its own on the waiter's slot:
  // forward what reaches it.
  auto slot = waiter_->get_cancellation_slot();
  if (slot.is_connected()) {
    slot.assign([&forward](asio::cancellation_type type) { forward.emit(type); });
  }
}

CancellableCall::Entry CancellableCall::child_entry(asio::awaitable<void> call,
                                                    CancellableCall* parent) {
  Link link(parent);
  std::exception_ptr error;
  try {
    co_await std::move(call);
  } catch (...) {
    error = std::current_exception();
  }
  link.finish(std::move(error));
}

}  // namespace coromesh::qos
