// http::Client while a host name is being resolved: a call cancelled, or out of its
// connect time, during the lookup ends then, as a cancellation or a connect timeout, not
// when getaddrinfo() returns. Asio's resolver runs getaddrinfo() on a thread of its own
// and cannot interrupt it: a name server that does not answer holds it for seconds.
//
// The lookup is made as slow as the test says with a resolver path it controls, not a
// name server: this binary defines getaddrinfo() itself (its own definition wins over
// libc's, and its calls go on to libc's), holding lookups of one reserved name (RFC 6761
// `.invalid`, which no name server is ever asked about) until released. Kept in a binary
// of its own so no other test resolves through it.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <netdb.h>

#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string_view>

#include "client_fixture.hpp"
#include "coromesh/http/client.hpp"

namespace {

constexpr std::string_view kHeldName = "held-lookup.invalid";

// Lookups of kHeldName wait for release() (20 s at most), then resolve as 127.0.0.1.
struct HeldLookups {
  std::mutex mutex;
  std::condition_variable released_cv;
  bool released = false;
  std::atomic<int> started{0};

  void release() {
    {
      const std::lock_guard lock(mutex);
      released = true;
    }
    released_cv.notify_all();
  }
};
HeldLookups held;

}  // namespace

extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** results) {
  using Getaddrinfo = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  static const auto libc_getaddrinfo =
      reinterpret_cast<Getaddrinfo>(dlsym(RTLD_NEXT, "getaddrinfo"));
  if (node != nullptr && std::string_view(node) == kHeldName) {
    ++held.started;
    std::unique_lock lock(held.mutex);
    held.released_cv.wait_for(lock, std::chrono::seconds(20), [] { return held.released; });
    return libc_getaddrinfo("127.0.0.1", service, hints, results);
  }
  return libc_getaddrinfo(node, service, hints, results);
}

namespace coromesh::http::client_testing {
namespace {

struct CallEnd {
  bool done = false;
  std::exception_ptr error;
};

class ClientResolution : public ::testing::Test {
 protected:
  void SetUp() override {
    held.started = 0;
    const std::lock_guard lock(held.mutex);
    held.released = false;
  }
  // Whatever happened, the held lookup ends before the io_context goes (its resolver
  // thread is joined then).
  void TearDown() override { held.release(); }

  // Starts a GET of `kHeldName` and runs until its lookup is held.
  void start_call(Client& client, std::chrono::milliseconds timeout) {
    Request request{Verb::get, "/", 11};
    asio::co_spawn(
        io_,
        client.send(Destination{std::string(kHeldName), 9}, std::move(request),
                    Client::Clock::now() + timeout),
        asio::bind_cancellation_slot(cancel_.slot(), [this](std::exception_ptr e, Response) {
          end_ = {true, e};
        }));
    for (int i = 0; i < 500 && held.started == 0; ++i) {
      io_.run_for(10ms);
    }
    ASSERT_EQ(held.started, 1) << "the lookup did not start";
  }
  // Runs until the call ends (5 s at most) with the lookup still held.
  void run_until_the_call_ends() {
    for (int i = 0; i < 500 && !end_.done; ++i) {
      io_.run_for(10ms);
    }
  }

  asio::io_context io_;
  asio::cancellation_signal cancel_;
  CallEnd end_;
};

TEST_F(ClientResolution, ACancellationDuringTheLookupEndsTheCallAsACancellationThen) {
  Client client(io_.get_executor(), {.connect_timeout = 30s});
  start_call(client, 30s);
  io_.run_for(100ms);
  ASSERT_FALSE(end_.done);
  cancel_.emit(asio::cancellation_type::terminal);
  run_until_the_call_ends();
  ASSERT_TRUE(end_.done) << "the cancelled call waited for the lookup";
  ASSERT_TRUE(end_.error);
  try {
    std::rethrow_exception(end_.error);
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), asio::error::operation_aborted) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a cancellation: " << e.what();
  }
}

TEST_F(ClientResolution, AConnectTimeoutDuringTheLookupEndsTheCallThen) {
  Client client(io_.get_executor(), {.connect_timeout = 300ms});
  start_call(client, 30s);
  run_until_the_call_ends();
  ASSERT_TRUE(end_.done) << "the call waited for the lookup past its connect timeout";
  ASSERT_TRUE(end_.error);
  try {
    std::rethrow_exception(end_.error);
  } catch (const ClientError& e) {
    EXPECT_EQ(e.code(), ClientErrc::connect_timeout) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ClientError: " << e.what();
  }
}

// A lookup that does come back in time is used (here: nothing listens on the port).
TEST_F(ClientResolution, AnAnswerInTimeIsUsed) {
  Client client(io_.get_executor(), {.connect_timeout = 30s});
  start_call(client, 30s);
  held.release();
  run_until_the_call_ends();
  ASSERT_TRUE(end_.done);
  ASSERT_TRUE(end_.error);
  try {
    std::rethrow_exception(end_.error);
  } catch (const ClientError& e) {
    EXPECT_EQ(e.code(), ClientErrc::connect_failed) << e.what();
    EXPECT_NE(std::string(e.what()).find("refused"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace coromesh::http::client_testing
