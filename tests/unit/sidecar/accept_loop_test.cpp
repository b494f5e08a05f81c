// The listeners' accept loop: a burst waiting in the backlog is taken in batches of
// kAcceptBatch, each within one trip through the accepting thread's queue, and the
// connections are spread round robin over the io threads.
#include "src/accept_loop.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <optional>
#include <vector>

namespace coromesh::sidecar {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

TEST(AcceptLoop, ABurstInTheBacklogIsTakenInBatchesWithinOneTripThroughTheQueue) {
  asio::io_context io;
  runtime::IoPool pool(2);  // never started: the sockets only need its executors
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  // Each connect completes in the kernel: all of them wait in the backlog before the
  // loop starts.
  const std::size_t burst = kAcceptBatch + 6;
  std::vector<tcp::socket> clients;
  for (std::size_t i = 0; i < burst; ++i) {
    clients.emplace_back(io).connect(acceptor.local_endpoint());
  }
  std::vector<tcp::socket> admitted;
  std::vector<std::size_t> threads;
  std::optional<std::size_t> admitted_before_the_next_trip;
  asio::co_spawn(io,
                 accept_connections(acceptor, pool,
                                    {.admit =
                                         [&](tcp::socket socket, std::size_t thread) {
                                           if (admitted.empty()) {
                                             // Queued behind the loop's handler that admits this
                                             // one.
                                             asio::post(io, [&] {
                                               admitted_before_the_next_trip = admitted.size();
                                             });
                                           }
                                           admitted.push_back(std::move(socket));
                                           threads.push_back(thread);
                                           if (admitted.size() == burst) {
                                             acceptor.close();
                                           }
                                         },
                                     .failed =
                                         [](const boost::system::error_code& error) {
                                           ADD_FAILURE() << "accept failed: " << error.message();
                                         }}),
                 asio::detached);
  io.run();
  EXPECT_EQ(admitted_before_the_next_trip, kAcceptBatch)
      << "one asynchronous accept per connection costs a trip through the queue each";
  ASSERT_EQ(admitted.size(), burst) << "the rest of the burst, in the next trip";
  for (std::size_t i = 0; i < burst; ++i) {
    EXPECT_EQ(threads[i], i % 2) << "connection " << i;
    EXPECT_EQ(admitted[i].get_executor(), pool.executor(i % 2)) << "connection " << i;
  }
}

}  // namespace
}  // namespace coromesh::sidecar
