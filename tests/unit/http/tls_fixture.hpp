#pragma once

// An http::Server serving over mutual TLS on loopback, with the Connect module's pieces
// plugged into the TLS seam as a Connect-native service would plug them: contexts from
// connect::make_tls_context (swappable, as CertificateSource swaps them), the peer's
// SPIFFE ID checked by connect::verify_peer. Certificates come from the in-process test
// CA (tests/support/test_certificate_authority.hpp). Clients run on the test's thread.

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "coromesh/connect/peer_verifier.hpp"
#include "coromesh/connect/tls_contexts.hpp"
#include "coromesh/http/client.hpp"
#include "coromesh/http/server.hpp"
#include "coromesh/http/tls.hpp"
#include "recording_observer.hpp"
#include "test_certificate_authority.hpp"

namespace coromesh::http::testing {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using namespace std::chrono_literals;

// Runs `task` on `ioc` (the test thread's) to completion; rethrows what it threw.
template <class T>
T run(asio::io_context& ioc, asio::awaitable<T> task) {
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) {
      result.emplace(std::move(value));
    }
  });
  ioc.restart();
  ioc.run();
  if (error) {
    std::rethrow_exception(error);
  }
  return std::move(*result);
}

// Waits (at most 5 s) for what the server does after the client has seen its side.
inline bool eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 500 && !condition(); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

// The serial number of the peer's certificate; -1 without one.
inline long peer_serial_number(SSL* session) {
  X509* peer = SSL_get0_peer_certificate(session);
  return peer ? ASN1_INTEGER_get(X509_get0_serialNumber(peer)) : -1;
}

// A client context that presents no certificate but trusts `roots`.
inline std::shared_ptr<ssl::context> anonymous_client_context(const consul::CaRoots& roots) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  for (const auto& root : roots.roots) {
    context->add_certificate_authority(asio::buffer(root.root_cert_pem));
  }
  context->set_verify_mode(ssl::verify_peer);
  return context;
}

// Lets a context speak TLS 1.0 and 1.1 (their ciphers and SHA-1 signatures), up to `max_version`
// (0: the highest): the floor must then come from http::Server and http::Client.
inline std::shared_ptr<ssl::context> permissive(std::shared_ptr<ssl::context> context,
                                                int max_version) {
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(context->native_handle(), max_version);
  // Ciphers TLS 1.0 and 1.1 can use (the Connect contexts list only TLS 1.2 ones).
  SSL_CTX_set_cipher_list(context->native_handle(), "DEFAULT@SECLEVEL=0");
  SSL_CTX_set_security_level(context->native_handle(), 0);
  return context;
}

// The server's current context, replaceable while it serves (a certificate rotation).
class ContextSlot {
 public:
  void set(std::shared_ptr<ssl::context> context) {
    std::lock_guard lock(mutex_);
    current_ = std::move(context);
  }
  std::shared_ptr<ssl::context> get() const {
    std::lock_guard lock(mutex_);
    return current_;
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<ssl::context> current_;
};

// Records every TLS handshake's outcome besides every finished request's status, as a
// service's metrics would count them.
class HandshakeRecorder final : public RecordingObserver {
 public:
  void tls_handshake_finished(TlsHandshakeResult result, std::string_view reason) override {
    std::lock_guard lock(mutex_);
    outcomes_.emplace_back(result, std::string(reason));
  }
  std::vector<std::pair<TlsHandshakeResult, std::string>> outcomes() const {
    std::lock_guard lock(mutex_);
    return outcomes_;
  }

 private:
  std::vector<std::pair<TlsHandshakeResult, std::string>> outcomes_;  // under mutex_
};

class HttpTls : public ::testing::Test {
 protected:
  HttpTls() {
    server_context_.set(server_context(ca_.leaf("api")));
    router_.add(Verb::get, "/whoami", "whoami",
                [](RequestContext& ctx) -> asio::awaitable<Response> {
                  Response response{Status::ok, 11};
                  response.body() = std::string(ctx.peer_identity);
                  co_return response;
                });
    router_.add(Verb::get, "/slow", "slow", [this](RequestContext&) -> asio::awaitable<Response> {
      ++slow_started_;
      asio::steady_timer timer(co_await asio::this_coro::executor, 300ms);
      co_await timer.async_wait(asio::use_awaitable);
      co_return Response{Status::ok, 11};
    });
  }

  ~HttpTls() override {
    if (server_) {
      server_->stop_accepting();
      asio::co_spawn(pool_.executor(0), server_->drain(2s), asio::use_future).get();
      pool_.stop();
      pool_.join();
    }
  }

  std::shared_ptr<ssl::context> server_context(const consul::LeafCertificate& leaf) {
    return connect::make_tls_context(connect::TlsRole::server, leaf, ca_.roots());
  }
  std::shared_ptr<ssl::context> client_context(const consul::LeafCertificate& leaf) {
    return connect::make_tls_context(connect::TlsRole::client, leaf, ca_.roots());
  }

  // Connect's rule in miniature: the peer is its verified SPIFFE ID, and service
  // "blocked" is denied (the authorizer's job in a real service). With
  // `connect_reasons`, failed handshakes are named by connect::classify_handshake_failure
  // instead of by OpenSSL.
  void start_server(std::chrono::milliseconds handshake_timeout = 5s, bool connect_reasons = true) {
    server_ = std::make_unique<Server>(pool_, router_, server_limits_, &handshakes_);
    ServerTls tls;
    tls.context = [this] { return server_context_.get(); };
    tls.handshake_timeout = handshake_timeout;
    tls.accept_peer = [trust_domain = ca_.trust_domain()](SSL* session) {
      auto verified = connect::verify_peer(session, {.trust_domain = trust_domain});
      if (!verified) {
        return PeerVerdict::refuse(std::string(connect::to_string(verified.refusal)));
      }
      if (verified.peer->service == "blocked") {
        return PeerVerdict::refuse("service denied");
      }
      return PeerVerdict::accept(verified.peer->uri());
    };
    tls.authorize_peer = authorize_;
    if (connect_reasons) {
      tls.describe_failure = [](SSL* session, const boost::system::error_code& error) {
        return std::string(
            connect::to_string(connect::classify_handshake_failure(session, error).refusal));
      };
    }
    server_->enable_tls(std::move(tls));
    server_->listen("127.0.0.1", 0);
    server_->start();
    pool_.start();
  }

  // A destination reached with `context` that accepts only a server certified as
  // `service`. Port 0: the server's.
  Destination destination(std::shared_ptr<ssl::context> context, std::string service = "api",
                          std::uint16_t port = 0) {
    auto tls = std::make_shared<ClientTls>();
    tls->context = [context] { return context; };
    tls->server_name = service;
    tls->verify_peer = [this, service](SSL* session) {
      served_by_serial_ = peer_serial_number(session);
      auto verified =
          connect::verify_peer(session, {.trust_domain = ca_.trust_domain(), .service = service});
      if (!verified) {
        return PeerVerdict::refuse(std::string(connect::to_string(verified.refusal)) + ": " +
                                   verified.detail);
      }
      return PeerVerdict::accept(verified.peer->uri());
    };
    return Destination{"127.0.0.1", port != 0 ? port : server_->port(), std::move(tls)};
  }

  Response whoami(Client& client, const Destination& to) {
    return run(ioc_, client.get(to, "/whoami", 5s));
  }

  // The ClientError a call ends with; fails the test if it succeeds.
  ClientError whoami_error(Client& client, const Destination& to) {
    try {
      auto response = whoami(client, to);
      ADD_FAILURE() << "the call succeeded: " << response.result_int() << " " << response.body();
    } catch (const ClientError& e) {
      return e;
    }
    return ClientError(ClientErrc::bad_response, "no error");
  }

  coromesh::testing::TestCertificateAuthority ca_;
  HandshakeRecorder handshakes_;  // before server_: it must outlive the server
  ContextSlot server_context_;
  runtime::IoPool pool_{1};
  Router router_;
  std::unique_ptr<Server> server_;
  asio::io_context ioc_;
  std::atomic<int> slow_started_{0};
  long served_by_serial_ = 0;  // the last server certificate a client's check saw
  // Set before start_server(): the server's limits.
  ServerLimits server_limits_{};
  // Set before start_server(): the server's awaited authorization step.
  PeerAuthorization authorize_;
};

}  // namespace coromesh::http::testing
