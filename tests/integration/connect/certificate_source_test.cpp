// The Connect identity pieces against a real `consul agent -dev` (Connect is on in dev
// mode): leaf and roots from the agent, real mTLS handshakes on loopback, a CA rotation.

#include <openssl/ssl.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "connect_fixture.hpp"
#include "coromesh/connect/tls_contexts.hpp"
#include "test_certificate_authority.hpp"

namespace coromesh::connect {
namespace {

class CertificateSourceIntegration : public ConnectIntegration {
 protected:
  asio::awaitable<void> register_services() {
    for (const char* name : {"a", "b"}) {
      co_await agent_.register_service({.name = name, .port = 9000});
    }
  }
};

TEST_F(CertificateSourceIntegration, FetchesALeafAndTheRootsOfARegisteredService) {
  run([this]() -> asio::awaitable<void> {
    co_await register_services();
    auto roots = co_await agent_.connect_ca_roots({});
    auto leaf = co_await agent_.connect_ca_leaf("b", {});
    EXPECT_GT(roots.index, 0u);
    EXPECT_TRUE(roots.value.trust_domain.ends_with(".consul")) << roots.value.trust_domain;
    if (roots.value.active_root() == nullptr) {
      ADD_FAILURE() << "no active root";
      co_return;
    }
    EXPECT_TRUE(roots.value.active_root()->active);
    EXPECT_NE(roots.value.active_root()->root_cert_pem.find("BEGIN CERTIFICATE"),
              std::string::npos);

    EXPECT_EQ(leaf.value.service, "b");
    EXPECT_NE(leaf.value.private_key_pem.find("BEGIN EC PRIVATE KEY"), std::string::npos);
    auto id = parse_spiffe_id(leaf.value.service_uri);
    EXPECT_TRUE(id) << leaf.value.service_uri << ": " << id.error;
    if (id) {
      EXPECT_EQ(id.id->service, "b");
      EXPECT_TRUE(id.id->same_trust_domain(roots.value.trust_domain));
    }
    auto now = std::chrono::system_clock::now();
    EXPECT_LT(leaf.value.valid_after, now + 1min);
    EXPECT_GT(leaf.value.valid_before, now);

    // A blocking query at the current index holds until its wait passes: nothing changed.
    auto again = co_await agent_.connect_ca_leaf("b", {.index = leaf.index, .wait = 1s});
    EXPECT_EQ(again.value.serial_number, leaf.value.serial_number);
  }());
}

// A waiter of ready() outlives no certificate source: once run() has ended without a
// certificate (here the shutdown's terminal cancellation, while the agent is down so none
// can come), ready() fails at once with an error that says so, and so does any ready()
// called afterwards, instead of waiting for a certificate that nothing will fetch.
TEST_F(CertificateSourceIntegration, ReadyFailsOnceRunHasEndedWithoutACertificate) {
  CertificateSource certs(ioc_.get_executor(), agent_, "a",
                          {.watch = {.wait = 5s, .backoff_initial = 50ms, .backoff_max = 200ms}});
  asio::cancellation_signal stop_run;
  asio::cancellation_signal cancel_ready;
  bool run_ended = false;
  struct Waiter {
    bool ended = false;
    std::exception_ptr error;
  };
  Waiter first;
  Waiter later;
  auto wait_ready = [&](Waiter& waiter, asio::cancellation_slot slot) {
    asio::co_spawn(ioc_, certs.ready(),
                   asio::bind_cancellation_slot(slot, [&waiter](std::exception_ptr e) {
                     waiter.ended = true;
                     waiter.error = e;
                   }));
  };
  auto says_stopped = [](const Waiter& waiter) {
    try {
      std::rethrow_exception(waiter.error);
    } catch (const CertificateSourceStopped& e) {
      return std::string(e.what()).find("'a'") != std::string::npos;
    } catch (...) {
    }
    return false;
  };
  run([&]() -> asio::awaitable<void> {
    co_await consul::off_loop([&] { consul_.stop(); });  // no certificate can arrive
    asio::co_spawn(ioc_, certs.run(),
                   asio::bind_cancellation_slot(stop_run.slot(),
                                                [&](std::exception_ptr) { run_ended = true; }));
    wait_ready(first, cancel_ready.slot());
    co_await consul::sleep_for(300ms);  // both under way, the watches retrying (not an assertion)
    EXPECT_FALSE(first.ended);
    stop_run.emit(asio::cancellation_type::terminal);
    EXPECT_TRUE(co_await consul::eventually([&] { return run_ended; }, 5s));
    EXPECT_TRUE(co_await consul::eventually([&] { return first.ended; }, 5s))
        << "ready() still waits after run() has ended";
    wait_ready(later, {});
    EXPECT_TRUE(co_await consul::eventually([&] { return later.ended; }, 5s))
        << "a ready() called after run() ended waits";
    if (!first.ended) {
      cancel_ready.emit(asio::cancellation_type::terminal);  // not to leave it behind
      co_await consul::eventually([&] { return first.ended; }, 5s);
    }
  }());
  EXPECT_EQ(certs.generation(), 0u);
  EXPECT_TRUE(first.error && says_stopped(first)) << "not a CertificateSourceStopped naming 'a'";
  EXPECT_TRUE(later.error && says_stopped(later)) << "not a CertificateSourceStopped naming 'a'";
}

TEST_F(CertificateSourceIntegration, MutualTlsBetweenTwoServicesVerifiesBothPeers) {
  auto& a = source("a");
  auto& b = source("b");
  run([&]() -> asio::awaitable<void> {
    co_await register_services();
    co_await a.ready();
    co_await b.ready();
    EXPECT_EQ(a.generation(), 1u);
    EXPECT_EQ(a.trust_domain(), b.trust_domain());
    EXPECT_GT(a.leaf_expiry().value_or(std::chrono::system_clock::time_point{}),
              std::chrono::system_clock::now());

    auto pair = co_await connect_pair(*b.server_context(), *a.client_context(),
                                      {.trust_domain = b.trust_domain()},
                                      {.trust_domain = a.trust_domain(), .service = "b"});
    EXPECT_TRUE(pair->server_view)
        << to_string(pair->server_view.refusal) << ": " << pair->server_view.detail;
    EXPECT_TRUE(pair->client_view)
        << to_string(pair->client_view.refusal) << ": " << pair->client_view.detail;
    if (pair->server_view && pair->client_view) {
      EXPECT_EQ(pair->server_view.peer->service, "a") << "the server read the client's identity";
      EXPECT_EQ(pair->client_view.peer->service, "b");
      EXPECT_EQ(pair->server_view.peer->uri(), a.material()->leaf_uri);
      EXPECT_EQ(SSL_version(pair->server.native_handle()), TLS1_3_VERSION) << "1.3 preferred";
    }
    EXPECT_TRUE(pair->exchanged);
  }());
}

TEST_F(CertificateSourceIntegration, ASelfSignedClientIsRefusedAsUntrusted) {
  auto& b = source("b");
  run([&]() -> asio::awaitable<void> {
    co_await register_services();
    co_await b.ready();
    // It even names a plausible identity of the right trust domain: only the chain tells.
    auto impostor =
        coromesh::testing::self_signed("spiffe://" + b.trust_domain() + "/ns/default/dc/dc1/svc/a");
    ssl::context client_ctx(ssl::context::tls_client);
    client_ctx.use_certificate_chain(asio::buffer(impostor.cert_pem));
    client_ctx.use_private_key(asio::buffer(impostor.key_pem), ssl::context::pem);
    client_ctx.set_verify_mode(ssl::verify_none);

    auto pair = co_await connect_pair(*b.server_context(), client_ctx,
                                      {.trust_domain = b.trust_domain()}, {});
    EXPECT_FALSE(pair->server_view);
    EXPECT_EQ(pair->server_view.refusal, PeerRefusal::untrusted_chain)
        << to_string(pair->server_view.refusal) << ": " << pair->server_view.detail;
    EXPECT_FALSE(pair->exchanged);

    // And a client with no certificate at all.
    ssl::context anonymous(ssl::context::tls_client);
    anonymous.set_verify_mode(ssl::verify_none);
    auto bare = co_await connect_pair(*b.server_context(), anonymous,
                                      {.trust_domain = b.trust_domain()}, {});
    EXPECT_EQ(bare->server_view.refusal, PeerRefusal::no_certificate)
        << to_string(bare->server_view.refusal) << ": " << bare->server_view.detail;
    EXPECT_FALSE(bare->exchanged);
  }());
}

TEST_F(CertificateSourceIntegration, AClientExpectingAnotherServiceRefusesTheServer) {
  auto& a = source("a");
  auto& b = source("b");
  run([&]() -> asio::awaitable<void> {
    co_await register_services();
    co_await a.ready();
    co_await b.ready();
    auto pair = co_await connect_pair(*b.server_context(), *a.client_context(),
                                      {.trust_domain = b.trust_domain()},
                                      {.trust_domain = a.trust_domain(), .service = "c"});
    EXPECT_FALSE(pair->client_view);
    EXPECT_EQ(pair->client_view.refusal, PeerRefusal::unexpected_service)
        << pair->client_view.detail;
    EXPECT_EQ(pair->client_view.detail, "service b, expected c");

    // The same certificate under another trust domain's expectation.
    auto foreign = co_await connect_pair(*b.server_context(), *a.client_context(),
                                         {.trust_domain = b.trust_domain()},
                                         {.trust_domain = "other.consul", .service = "b"});
    EXPECT_EQ(foreign->client_view.refusal, PeerRefusal::wrong_trust_domain)
        << foreign->client_view.detail;
  }());
}

// Consul re-issues existing leaves at a random point of a 30s window after a rotation
// (caChangeJitterWindow), too slow for a test: the sources must publish the new roots
// at once, and a leaf issued after the rotation (service d) shows the new chain working.
TEST_F(CertificateSourceIntegration, ARootRotationPublishesANewGenerationThatHandshakes) {
  auto& a = source("a");
  auto& b = source("b");
  run(
      [&]() -> asio::awaitable<void> {
        co_await register_services();
        co_await a.ready();
        co_await b.ready();
        auto before_a = a.material();
        auto before_b = b.material();
        auto old_root = before_b->roots.active_root_id;
        // A connection opened before the rotation, kept open across it.
        auto old_pair = co_await connect_pair(*before_b->server, *before_a->client,
                                              {.trust_domain = b.trust_domain()},
                                              {.trust_domain = a.trust_domain(), .service = "b"});
        EXPECT_TRUE(old_pair->exchanged);

        // The built-in CA with a new private key: Consul makes a new root from it and
        // cross-signs it with the old one.
        boost::json::object config{
            {"Provider", "consul"},
            {"Config", {{"PrivateKey", coromesh::testing::new_ec_key_pem()}}}};
        coromesh::testing::FetchResult answer;
        co_await consul::off_loop([&] {
          answer =
              consul_.api("PUT", "/v1/connect/ca/configuration", boost::json::serialize(config));
        });
        EXPECT_EQ(answer.status, 200) << answer.body << answer.error;

        auto has_new_root = [&](CertificateSource& source) {
          const auto& roots = source.material()->roots;
          const auto* active = roots.active_root();
          return roots.active_root_id != old_root && active != nullptr && active->active;
        };
        bool published =
            co_await consul::eventually([&] { return has_new_root(a) && has_new_root(b); }, 10s);
        EXPECT_TRUE(published) << "no generation with the new root within 10s";
        if (!published) {
          co_return;
        }
        auto after_b = b.material();
        EXPECT_GT(after_b->generation, before_b->generation);
        EXPECT_GE(after_b->roots.roots.size(), 2u) << "the old root is still trusted";

        auto renewed = co_await connect_pair(*b.server_context(), *a.client_context(),
                                             {.trust_domain = b.trust_domain()},
                                             {.trust_domain = a.trust_domain(), .service = "b"});
        EXPECT_TRUE(renewed->exchanged)
            << to_string(renewed->server_view.refusal) << " " << renewed->server_view.detail
            << " / " << renewed->client_view.detail;

        // A leaf issued now is signed by the new root; its CertPEM carries the new root
        // cross-signed by the old one, so even a peer still holding only the old root
        // accepts it — provided the whole chain is sent.
        co_await agent_.register_service({.name = "d", .port = 9000});
        auto& d = source("d");
        co_await d.ready();
        auto d_leaf = co_await agent_.connect_ca_leaf("d", {});
        std::size_t certificates = 0;
        for (auto at = d_leaf.value.cert_pem.find("BEGIN CERTIFICATE"); at != std::string::npos;
             at = d_leaf.value.cert_pem.find("BEGIN CERTIFICATE", at + 1)) {
          ++certificates;
        }
        EXPECT_GE(certificates, 2u) << "leaf + cross-signed intermediate";
        auto fresh = co_await connect_pair(*b.server_context(), *d.client_context(),
                                           {.trust_domain = b.trust_domain()},
                                           {.trust_domain = d.trust_domain(), .service = "b"});
        EXPECT_TRUE(fresh->exchanged)
            << fresh->server_view.detail << " / " << fresh->client_view.detail;
        auto to_old = co_await connect_pair(*before_b->server, *d.client_context(),
                                            {.trust_domain = b.trust_domain()},
                                            {.trust_domain = d.trust_domain(), .service = "b"});
        EXPECT_TRUE(to_old->server_view)
            << to_string(to_old->server_view.refusal) << ": " << to_old->server_view.detail;
        EXPECT_TRUE(to_old->exchanged);

        EXPECT_TRUE(co_await old_pair->round_trip()) << "the connection opened before still works";
      }(),
      std::chrono::seconds(20));
}

}  // namespace
}  // namespace coromesh::connect
