// Hostile and unwelcome peers at a sidecar's public port, each refused, counted by
// reason, and none taking the sidecar down: after every one, legitimate traffic through
// A's sidecar still reaches B.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cerrno>
#include <thread>
#include <vector>

#include "mesh_fixture.hpp"
#include "test_certificate_authority.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

// A ClientHello's first bytes (a handshake record header), then nothing.
constexpr unsigned char kPartialClientHello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};

class SidecarRefusals : public ::testing::Test {
 protected:
  // More flags for B's sidecar (a derived fixture's).
  virtual std::vector<std::string> b_sidecar_flags() const { return {"--handshake-timeout", "1s"}; }

  void SetUp() override {
    const auto ports = free_ports(3);
    b_public_ = ports[0];
    a_upstream_ = ports[2];
    auto b_flags =
        std::vector<std::string>{"--service",  "b",        "--service-addr",
                                 b_.address(), "--listen", "127.0.0.1:" + std::to_string(b_public_),
                                 "--register"};
    for (auto& flag : b_sidecar_flags()) {
      b_flags.push_back(std::move(flag));
    }
    b_sidecar_ = std::make_unique<SidecarProcess>(consul_, logs_.path(), "b-sidecar", b_flags);
    a_sidecar_ = std::make_unique<SidecarProcess>(
        consul_, logs_.path(), "a-sidecar",
        std::vector<std::string>{"--service", "a", "--service-addr", a_.address(), "--listen",
                                 "127.0.0.1:" + std::to_string(ports[1]), "--register",
                                 "--upstream", "b:" + std::to_string(a_upstream_)});
    ASSERT_TRUE(
        wait_until([&] { return exchange(a_upstream_, "ping", 2s) == "b1:ping"; }, 30s, 100ms))
        << a_sidecar_->log_tail() << b_sidecar_->log_tail();
  }

  // A Consul-issued leaf for `service` (the agent signs one for any name).
  PemPair consul_leaf(const std::string& service) {
    const auto leaf = json::parse(consul_.api("GET", "/v1/agent/connect/ca/leaf/" + service).body);
    return {std::string(leaf.at("CertPEM").as_string()),
            std::string(leaf.at("PrivateKeyPEM").as_string())};
  }
  std::string trust_domain() {
    return std::string(json::parse(consul_.api("GET", "/v1/agent/connect/ca/roots").body)
                           .at("TrustDomain")
                           .as_string());
  }

  double refused(const std::string& reason) {
    return b_sidecar_->metric("coromesh_sidecar_handshakes_total",
                              {R"(result="refused")", "reason=\"" + reason + "\""});
  }
  // B's sidecar is alive and still serves A.
  void expect_still_serving() {
    EXPECT_EQ(exchange(a_upstream_, "ping"), "b1:ping") << b_sidecar_->log_tail();
    EXPECT_TRUE(b_sidecar_->process().running());
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-sidecar-test"};
  TaggedEchoServer a_{"a"}, b_{"b1"};
  std::uint16_t b_public_ = 0, a_upstream_ = 0;
  std::unique_ptr<SidecarProcess> b_sidecar_, a_sidecar_;
};

TEST_F(SidecarRefusals, AConsulLeafOfAnAllowedServiceIsServedDirectly) {
  // The positive control for the refusals below: the same client code with a good leaf.
  const auto leaf = consul_leaf("a");
  const auto context = client_context(leaf.cert_pem, leaf.key_pem);
  EXPECT_EQ(tls_exchange(b_public_, context.get(), "hi"), "b1:hi") << b_sidecar_->log_tail();
}

TEST_F(SidecarRefusals, PlainTcpAndPlainHttpAreRefused) {
  EXPECT_EQ(raw_exchange("127.0.0.1", b_public_, "hello, are you there?\n", 3s).find("b1:"),
            std::string::npos);
  const auto http = raw_exchange("127.0.0.1", b_public_, "GET / HTTP/1.1\r\nHost: b\r\n\r\n", 3s);
  EXPECT_EQ(http.find("HTTP/1.1"), std::string::npos) << "nothing reached the backend";
  EXPECT_TRUE(wait_until([&] { return refused("handshake_failed") >= 2; }, 5s))
      << b_sidecar_->metrics();
  expect_still_serving();
}

TEST_F(SidecarRefusals, SelfSignedAndForeignCaCertificatesAreRefused) {
  const auto uri = "spiffe://" + trust_domain() + "/ns/default/dc/dc1/svc/a";
  const auto impostor = self_signed(uri);
  EXPECT_EQ(tls_exchange(b_public_, client_context(impostor.cert_pem, impostor.key_pem).get(), "x"),
            "");
  TestCertificateAuthority other_ca(trust_domain());
  const auto foreign = other_ca.leaf("a");
  EXPECT_EQ(
      tls_exchange(b_public_, client_context(foreign.cert_pem, foreign.private_key_pem).get(), "x"),
      "");
  EXPECT_EQ(tls_exchange(b_public_, client_context("", "").get(), "x"), "") << "no certificate";
  EXPECT_TRUE(wait_until(
      [&] { return refused("untrusted_chain") >= 2 && refused("no_certificate") >= 1; }, 5s))
      << b_sidecar_->metrics();
  expect_still_serving();
}

TEST_F(SidecarRefusals, AValidCertificateOfADeniedServiceIsRefused) {
  ASSERT_EQ(consul_
                .api("PUT", "/v1/connect/intentions/exact?source=evil&destination=b",
                     R"({"Action": "deny"})")
                .status,
            200);
  const auto leaf = consul_leaf("evil");
  EXPECT_EQ(tls_exchange(b_public_, client_context(leaf.cert_pem, leaf.key_pem).get(), "x"), "");
  EXPECT_TRUE(wait_until([&] { return refused("unauthorized") >= 1; }, 5s));
  EXPECT_GE(b_sidecar_->metric("coromesh_sidecar_authorization_denials_total"), 1);
  expect_still_serving();
}

TEST_F(SidecarRefusals, OldTlsVersionsAreRefused) {
  const auto leaf = consul_leaf("a");
  for (int version : {TLS1_VERSION, TLS1_1_VERSION}) {
    EXPECT_EQ(
        tls_exchange(b_public_, client_context(leaf.cert_pem, leaf.key_pem, version, version).get(),
                     "x"),
        "");
  }
  EXPECT_TRUE(wait_until([&] { return refused("handshake_failed") >= 2; }, 5s))
      << b_sidecar_->metrics();
  expect_still_serving();
}

TEST_F(SidecarRefusals, AClientStallingMidHandshakeIsCutOffAtTheDeadline) {
  const int fd = connect_blocking(b_public_, 10s);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, kPartialClientHello, sizeof kPartialClientHello, MSG_NOSIGNAL), 6);
  const auto started = std::chrono::steady_clock::now();
  char buffer[64];
  const auto n = ::recv(fd, buffer, sizeof buffer, 0);  // the sidecar closes: 0 (or a reset)
  const auto waited = std::chrono::steady_clock::now() - started;
  ::close(fd);
  EXPECT_LE(n, 0);
  EXPECT_LT(waited, 8s) << "closed by the 1s handshake deadline, not by our 10s timeout";
  EXPECT_TRUE(wait_until([&] { return refused("handshake_timeout") >= 1; }, 5s))
      << b_sidecar_->metrics();
  expect_still_serving();
}

// Many hostile connections at once: half of them stall mid-ClientHello, half send a
// handshake record of garbage. Legitimate traffic goes on while they are open, every one
// of them is closed by the handshake deadline or refused, and the sidecar keeps serving.
TEST_F(SidecarRefusals, AStormOfHalfOpenAndGarbageHandshakesIsBounded) {
  constexpr int kEach = 200;
  const double timeouts_before = refused("handshake_timeout");
  const double failures_before = refused("handshake_failed");
  auto open = [&] {
    const int fd = connect_blocking(b_public_, 15s);
    EXPECT_GE(fd, 0);
    return fd;
  };
  std::vector<int> half_open;
  std::vector<int> garbage;
  std::string junk(512, '\0');
  for (int i = 0; i < kEach; ++i) {
    half_open.push_back(open());
    EXPECT_EQ(
        ::send(half_open.back(), kPartialClientHello, sizeof kPartialClientHello, MSG_NOSIGNAL), 6);
    // A handshake record header announcing 512 bytes, then 512 bytes of noise.
    for (std::size_t j = 0; j < junk.size(); ++j) {
      junk[j] = static_cast<char>((i * 131 + static_cast<int>(j) * 7) & 0xff);
    }
    const std::string record = std::string("\x16\x03\x01\x02\x00", 5) + junk;
    garbage.push_back(open());
    EXPECT_EQ(::send(garbage.back(), record.data(), record.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(record.size()));
  }
  expect_still_serving();  // while all of them are open
  int closed = 0;
  for (const auto& fds : {half_open, garbage}) {
    for (const int fd : fds) {
      char buffer[256];
      ssize_t n = 0;
      while ((n = ::recv(fd, buffer, sizeof buffer, 0)) > 0) {
        // a TLS alert may come first; the close follows
      }
      closed += n == 0 || (n < 0 && errno == ECONNRESET) ? 1 : 0;
      ::close(fd);
    }
  }
  EXPECT_EQ(closed, 2 * kEach) << "connections the sidecar did not close within 15 s";
  EXPECT_TRUE(wait_until(
      [&] {
        return refused("handshake_timeout") - timeouts_before >= kEach &&
               refused("handshake_failed") - failures_before >= kEach;
      },
      10s))
      << b_sidecar_->metrics();
  expect_still_serving();
}

// Past --max-pending-handshakes the oldest handshake in flight is shed: a flood of
// stalled ClientHellos cannot hold more than the bound's memory, and cannot lock a real
// peer out (its handshake is always among the newest). The 30 s handshake deadline is
// far off, so whatever closes the stalled ones in this test is the shedding.
class SidecarHandshakeBound : public SidecarRefusals {
 protected:
  static constexpr int kBound = 16;
  std::vector<std::string> b_sidecar_flags() const override {
    return {"--handshake-timeout", "30s", "--max-pending-handshakes", std::to_string(kBound)};
  }
};

TEST_F(SidecarHandshakeBound, TheOldestStalledHandshakesAreShedAndRealPeersStillGetIn) {
  constexpr int kStalled = 100;
  const double shed_before = refused("handshake_shed");
  std::vector<int> stalled;
  for (int i = 0; i < kStalled; ++i) {
    const int fd = connect_blocking(b_public_, 15s);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::send(fd, kPartialClientHello, sizeof kPartialClientHello, MSG_NOSIGNAL), 6);
    stalled.push_back(fd);
    // A handshake enters the bound when an io thread takes its first byte, and the two
    // threads may take neighbours' in either order (on a loaded machine one lagged the
    // other by dozens of connections). Past the bound, each one's entry sheds one: waiting
    // for that shed before the next connects makes the order of entry the order of
    // connecting, so exactly the oldest kStalled - kBound are the ones shed.
    if (i >= kBound) {
      ASSERT_TRUE(wait_until(
          [&] { return refused("handshake_shed") - shed_before >= i + 1 - kBound; }, 10s, 2ms))
          << "the sidecar did not shed a handshake past its bound (connection " << i << ")\n"
          << b_sidecar_->metrics();
    }
  }
  auto closed_by_sidecar = [](int fd) {
    pollfd ready{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&ready, 1, 100) != 1) {
      return false;
    }
    char byte;
    const auto n = ::recv(fd, &byte, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  };
  std::vector<bool> closed;
  for (const int fd : stalled) {
    closed.push_back(closed_by_sidecar(fd));
  }
  EXPECT_EQ(std::count(closed.begin(), closed.end(), true), kStalled - kBound);
  EXPECT_EQ(std::count(closed.begin(), closed.begin() + (kStalled - kBound), true),
            kStalled - kBound)
      << "the oldest are shed first";
  // A TCP health check (connect, hang up: Consul checks this port so) takes no slot: it
  // sheds nothing, with the bound full.
  const double shed_so_far = refused("handshake_shed");
  const double closed_before = refused("closed_before_handshake");
  for (int i = 0; i < 5; ++i) {
    const int fd = connect_blocking(b_public_, 15s);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  EXPECT_TRUE(
      wait_until([&] { return refused("closed_before_handshake") - closed_before >= 5; }, 10s))
      << b_sidecar_->metrics();
  std::this_thread::sleep_for(500ms);  // a shed would have closed one of ours by now
  int still_open = 0;
  for (std::size_t i = 0; i < stalled.size(); ++i) {
    pollfd ready{.fd = stalled[i], .events = POLLIN, .revents = 0};
    still_open += closed[i] ? 0 : (::poll(&ready, 1, 0) == 0 ? 1 : 0);
  }
  EXPECT_EQ(still_open, kBound) << "a hang-up shed a handshake";
  EXPECT_EQ(refused("handshake_shed"), shed_so_far);
  // Real peers get in while kBound stalled handshakes are in flight (the 30 s deadline is
  // far off): a client with a good leaf, and A's sidecar (a new mutual-TLS connection to
  // B for each call). The first sheds the oldest stalled handshake left (the bound is
  // full); the second finds a free slot, the first having finished.
  const auto leaf = consul_leaf("a");
  EXPECT_EQ(tls_exchange(b_public_, client_context(leaf.cert_pem, leaf.key_pem).get(), "hi"),
            "b1:hi")
      << b_sidecar_->log_tail();
  expect_still_serving();
  EXPECT_TRUE(wait_until(
      [&] { return refused("handshake_shed") - shed_before >= kStalled - kBound + 1; }, 10s))
      << b_sidecar_->metrics();
  for (const int fd : stalled) {
    ::close(fd);
  }
}

}  // namespace
}  // namespace coromesh::testing
