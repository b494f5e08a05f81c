#include "coromesh/connect/certificate_source.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/io_context.hpp>

#include "async_test.hpp"
#include "fake_agent_client.hpp"
#include "test_certificate_authority.hpp"

// The source against the fake agent client and a test CA: what is published when, and
// what is kept when the agent fails or sends unusable material.

namespace coromesh::connect {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using coromesh::testing::eventually;
using coromesh::testing::run_async;
using coromesh::testing::TestCertificateAuthority;

class CertificateSourceTest : public ::testing::Test {
 protected:
  CertificateSourceTest() {
    consul_.ca_roots = ca_.roots();
    consul_.leaf = ca_.leaf("web");
    // Each fake answer takes a moment, as a blocking query would: the watches yield.
    consul_.hang = 2ms;
  }

  ~CertificateSourceTest() override { stop(); }

  void start() {
    started_ = true;
    asio::co_spawn(ioc_, source_.run(),
                   asio::bind_cancellation_slot(stop_.slot(), [this](std::exception_ptr e) {
                     EXPECT_FALSE(e);
                     finished_ = true;
                   }));
  }

  // Terminal cancellation, as the shutdown sequence sends it; run() must return.
  void stop() {
    if (!started_ || finished_) {
      return;
    }
    stop_.emit(asio::cancellation_type::terminal);
    ioc_.restart();
    ioc_.run_for(1s);
    EXPECT_TRUE(finished_) << "run() did not end on terminal cancellation";
  }

  // Runs the io_context until `done` holds (at most 5s).
  bool wait_until(std::function<bool()> done) {
    bool held = false;
    run_async(ioc_, [&]() -> asio::awaitable<void> { held = co_await eventually(done, 5s); }());
    return held;
  }

  asio::io_context ioc_;
  TestCertificateAuthority ca_;
  consul::FakeAgentClient consul_;
  CertificateSource source_{ioc_.get_executor(),
                            consul_,
                            "web",
                            {.watch = {.backoff_initial = 10ms, .backoff_max = 20ms}}};
  asio::cancellation_signal stop_;
  bool started_ = false;
  bool finished_ = false;
};

TEST_F(CertificateSourceTest, NothingIsPublishedBeforeTheFirstAnswers) {
  EXPECT_EQ(source_.generation(), 0u);
  EXPECT_EQ(source_.material(), nullptr);
  EXPECT_EQ(source_.server_context(), nullptr);
  EXPECT_EQ(source_.client_context(), nullptr);
  EXPECT_FALSE(source_.leaf_expiry());
  EXPECT_EQ(source_.trust_domain(), "");
}

TEST_F(CertificateSourceTest, ReadyReturnsOnceTheLeafAndRootsArePublished) {
  start();
  run_async(ioc_, source_.ready());
  EXPECT_EQ(source_.generation(), 1u);
  EXPECT_EQ(source_.trust_domain(), ca_.trust_domain());
  EXPECT_EQ(source_.leaf_expiry(), consul_.leaf.valid_before);
  EXPECT_NE(source_.server_context(), nullptr);
  EXPECT_NE(source_.client_context(), source_.server_context());
  EXPECT_EQ(source_.material()->leaf_uri, ca_.service_uri("web"));
  EXPECT_EQ(consul_.count("ca_leaf web"), consul_.count("ca_leaf"));
  run_async(ioc_, source_.ready());  // at once, when already published
}

TEST_F(CertificateSourceTest, ANewLeafIsANewGenerationAndTheOldContextsLiveOn) {
  start();
  run_async(ioc_, source_.ready());
  auto old_server = source_.server_context();  // as an open connection holds it
  consul_.leaf = ca_.leaf("web");
  ++consul_.connect_index;  // the roots' index moves too, their value does not
  ASSERT_TRUE(wait_until([&] { return source_.generation() >= 2; }));
  ioc_.restart();
  ioc_.run_for(30ms);
  EXPECT_EQ(source_.generation(), 2u) << "one change, one generation";
  EXPECT_NE(source_.server_context(), old_server);
  EXPECT_EQ(source_.material()->leaf_serial, consul_.leaf.serial_number);
  EXPECT_EQ(old_server.use_count(), 1) << "the source no longer holds it; the holder does";
  EXPECT_NE(SSL_CTX_get0_certificate(old_server->native_handle()), nullptr);
}

TEST_F(CertificateSourceTest, UnusableMaterialIsSkippedAndTheLastGoodKept) {
  start();
  run_async(ioc_, source_.ready());
  auto good = source_.material();
  auto mismatched = ca_.leaf("web");
  mismatched.private_key_pem = ca_.leaf("web").private_key_pem;
  consul_.leaf = mismatched;
  ++consul_.connect_index;
  auto asked = consul_.count("ca_leaf");
  ASSERT_TRUE(wait_until([&] { return consul_.count("ca_leaf") > asked + 2; }));
  EXPECT_EQ(source_.generation(), 1u);
  EXPECT_EQ(source_.material(), good);

  consul_.leaf = ca_.leaf("web");  // the next usable answer is taken
  ++consul_.connect_index;
  ASSERT_TRUE(wait_until([&] { return source_.generation() == 2; }));
  EXPECT_EQ(source_.material()->leaf_serial, consul_.leaf.serial_number);
}

TEST_F(CertificateSourceTest, NewRootsAreANewGeneration) {
  start();
  run_async(ioc_, source_.ready());
  auto rotated = consul_.ca_roots;
  TestCertificateAuthority next(ca_.trust_domain(), "next-root");
  rotated.roots[0].active = false;
  rotated.roots.push_back(next.roots().roots[0]);
  rotated.active_root_id = "next-root";
  consul_.ca_roots = rotated;
  ++consul_.connect_index;
  ASSERT_TRUE(wait_until([&] { return source_.generation() == 2; }));
  EXPECT_EQ(source_.material()->roots, rotated);
}

TEST_F(CertificateSourceTest, AnAgentOutageKeepsTheMaterial) {
  start();
  run_async(ioc_, source_.ready());
  auto good = source_.material();
  consul_.reachable = false;
  auto asked = consul_.calls.size();
  ASSERT_TRUE(wait_until([&] { return consul_.calls.size() > asked + 4; }));
  EXPECT_EQ(source_.material(), good);
  EXPECT_EQ(source_.generation(), 1u);
}

TEST_F(CertificateSourceTest, RunEndsOnTerminalCancellationEvenMidQuery) {
  consul_.hang = 1h;  // a blocking query that would not return by itself
  start();
  ioc_.run_for(20ms);
  EXPECT_FALSE(finished_);
  stop();
  EXPECT_TRUE(finished_);
}

TEST_F(CertificateSourceTest, ACancelledReadyThrowsOperationAborted) {
  consul_.reachable = false;
  start();
  asio::cancellation_signal cancel_ready;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(ioc_, source_.ready(),
                 asio::bind_cancellation_slot(cancel_ready.slot(), [&](std::exception_ptr e) {
                   error = e;
                   done = true;
                 }));
  ioc_.run_for(20ms);
  cancel_ready.emit(asio::cancellation_type::terminal);
  ioc_.run_for(20ms);
  ASSERT_TRUE(done);
  coromesh::testing::expect_operation_aborted(error);
}

}  // namespace
}  // namespace coromesh::connect
