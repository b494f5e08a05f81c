#include "inbound_listener.hpp"

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <variant>

#include "accept_loop.hpp"
#include "coromesh/connect/peer_serial.hpp"
#include "coromesh/connect/peer_verifier.hpp"
#include "coromesh/connect/tls_session_cache.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/runtime/caught.hpp"
#include "coromesh/runtime/run_on.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string remote_of(const TcpSocket& socket) {
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  return ec ? std::string("?") : remote.address().to_string() + ":" + std::to_string(remote.port());
}

void close_quietly(TcpSocket& socket) {
  boost::system::error_code ignored;
  socket.close(ignored);
}

}  // namespace

tcp::endpoint resolve_now(const config::Address& address) {
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(address.host, ec);
  if (!ec) {
    return {ip, address.port};
  }
  asio::io_context io;
  tcp::resolver resolver(io);
  const auto results = resolver.resolve(address.host, std::to_string(address.port));
  return results.begin()->endpoint();  // resolve() throws when there is none
}

InboundListener::InboundListener(SidecarContext& context, config::Address listen,
                                 InboundTarget target)
    : context_(context),
      listen_(std::move(listen)),
      target_(std::move(target)),
      local_host_(target_.local.address().to_string()),
      metrics_(context.metrics.inbound()),
      handshakes_(context.settings.max_pending_handshakes) {}

void InboundListener::start(runtime::IoPool& pool) {
  acceptor_.emplace(context_.consul_executor);
  const tcp::endpoint endpoint = resolve_now(listen_);
  acceptor_->open(endpoint.protocol());
  acceptor_->set_option(tcp::acceptor::reuse_address(true));
  acceptor_->bind(endpoint);
  acceptor_->listen(asio::socket_base::max_listen_connections);
  port_ = acceptor_->local_endpoint().port();
  if (target_.mode == ListenerMode::http) {
    const http::ClientOptions options{.connect_timeout =
                                          std::chrono::duration_cast<std::chrono::milliseconds>(
                                              context_.settings.connect_timeout)};
    for (std::size_t i = 0; i < pool.size(); ++i) {
      local_clients_.push_back(std::make_unique<http::Client>(pool.executor(i), options));
    }
  }
  log::info("sidecar.inbound.listening", {{"address", listen_.host},
                                          {"port", port_},
                                          {"mode", to_string(target_.mode)},
                                          {"service", target_.service},
                                          {"local", target_.local.address().to_string() + ":" +
                                                        std::to_string(target_.local.port())}});
  runtime::spawn(context_.consul_executor, accept_loop(pool), "sidecar.inbound.accept");
}

void InboundListener::stop() {
  if (acceptor_) {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
  }
}

asio::awaitable<void> InboundListener::accept_loop(runtime::IoPool& pool) {
  const auto admit = [this](TcpSocket socket, std::size_t thread) {
    auto executor = socket.get_executor();
    runtime::spawn(executor, serve(std::move(socket), thread, context_.connections.admit()),
                   "sidecar.inbound.connection");
  };
  // EMFILE and friends: keep the listener, and let the condition pass.
  const auto failed = [](const boost::system::error_code& error) {
    log::write_limited(log::Level::warn, "sidecar.inbound.accept_failed", "accept",
                       {{"error", error.message()}});
  };
  co_await accept_connections(*acceptor_, pool, {.admit = admit, .failed = failed});
}

void InboundListener::refuse(std::string_view reason, std::string_view detail,
                             const std::string& peer) {
  context_.metrics.handshake(metrics_.listener, "refused", reason);
  log::write_limited(log::Level::warn, "sidecar.inbound.refused", reason,
                     {{"reason", reason}, {"peer", peer}, {"detail", detail}});
}

asio::awaitable<void> InboundListener::serve(TcpSocket socket, std::size_t thread,
                                             ConnectionRegistry::Admission admission) {
  const auto executor = co_await asio::this_coro::executor;
  const auto& settings = context_.settings;
  const std::string peer_address = remote_of(socket);
  set_no_delay(socket);
  // The handshake's deadline counts from the accept.
  asio::steady_timer deadline(executor, settings.handshake_timeout);
  // In the drain's registry from the accept on, whatever the connection waits for: its
  // first byte, the leaf certificate, the handshake, authorization, or (http mode) the
  // local service's answer to a request in flight. Not all of those are on a socket, so
  // the cut-off also fires `cut_off`, which the waits race.
  std::optional<TlsStream> tls;  // holds the socket once TLS begins
  TcpSocket local(executor);
  asio::steady_timer cut_off(executor, asio::steady_timer::time_point::max());
  // http mode: a drain closes the connection between requests, or after the answer in
  // hand (before the exchanges begin, their first answer is the last one).
  ExchangeControl exchanges;
  if (target_.mode == ListenerMode::http) {
    exchanges.refused = metrics_.refusal_counter();
    exchanges.hung_up = metrics_.hang_up_counter();
  }
  const auto ticket = context_.connections.enter(
      executor,
      [&socket, &tls, &local, &cut_off] {
        close_quietly(tls ? tls->next_layer() : socket);
        close_quietly(local);
        cut_off.cancel();
      },
      target_.mode == ListenerMode::http ? std::function<void()>([&exchanges, &tls] {
        if (tls) {
          drain_exchanges(exchanges, *tls);
        } else {
          exchanges.close_after = true;
        }
      })
                                         : nullptr);
  admission.release();
  {
    // Nothing of TLS is set up before the client's first byte: an SSL object in its
    // handshake holds ~45 KiB, and 10 000 connections that never send a ClientHello made
    // a sidecar hold 460 MiB (tests/integration/hostile/idle_connections.sh).
    auto first_byte = co_await (socket.async_wait(TcpSocket::wait_read, use_tuple) ||
                                deadline.async_wait(use_tuple));
    if (!socket.is_open()) {
      co_return;  // cut off by the shutdown
    }
    if (first_byte.index() == 1) {
      refuse("handshake_timeout", "no ClientHello before the deadline", peer_address);
      co_return;
    }
    // Readable may mean closed: a TCP health check (Consul's own, on this port) or a port
    // scan connects and hangs up. Such a connection takes no handshake slot (it would
    // shed a real handshake); it is counted apart, so that handshake_failed means real
    // attempts.
    std::byte first;
    boost::system::error_code peek_error;
    socket.non_blocking(true, peek_error);  // as TlsSocket sets it: never wait here
    const auto peeked =
        socket.receive(asio::buffer(&first, 1), TcpSocket::message_peek, peek_error);
    if (peeked == 0 && peek_error != asio::error::would_block) {
      context_.metrics.handshake(metrics_.listener, "refused", "closed_before_handshake");
      co_return;
    }
  }
  // From here until the handshake is done the connection holds TLS state: it counts
  // against --max-pending-handshakes, and may be shed (closed) as the oldest in flight.
  bool shed = false;
  auto slot = handshakes_.enter(executor, [&shed, &socket, &tls] {
    shed = true;
    close_quietly(tls ? tls->next_layer() : socket);
  });
  // The context current now: a rotation later does not touch this connection.
  auto leaf =
      co_await (current_tls_context(context_.certificates, true, settings.handshake_timeout) ||
                cut_off.async_wait(use_tuple));
  if (leaf.index() == 1) {
    co_return;  // cut off by the shutdown
  }
  const auto tls_context = std::get<0>(std::move(leaf));
  if (shed) {
    refuse("handshake_shed", "the oldest of too many handshakes in flight", peer_address);
    co_return;
  }
  if (!tls_context) {
    refuse("no_certificate_yet", "the leaf certificate has not arrived from Consul", peer_address);
    co_return;
  }
  auto& stream = tls.emplace(std::move(socket), tls_context, TlsSocket::Role::server);

  auto handshake = co_await (stream.handshake() || deadline.async_wait(use_tuple));
  slot.reset();  // no longer sheddable: what follows holds no handshake buffers
  if (shed) {
    refuse("handshake_shed", "the oldest of too many handshakes in flight", peer_address);
    co_return;
  }
  if (!stream.next_layer().is_open()) {
    co_return;  // cut off by the shutdown: not the peer's failed handshake
  }
  if (handshake.index() == 1) {
    refuse("handshake_timeout", "no complete handshake before the deadline", peer_address);
    co_return;
  }
  const auto handshake_error = std::get<0>(handshake);
  if (handshake_error && BIO_number_read(SSL_get_rbio(stream.native_handle())) == 0) {
    // Not a TLS client at all: a TCP health check (Consul's own, on this port) or a port
    // scan. Counted apart so that the handshake_failed count means real attempts.
    context_.metrics.handshake(metrics_.listener, "refused", "closed_before_handshake");
    co_return;
  }
  const auto verdict =
      handshake_error
          ? connect::classify_handshake_failure(stream.native_handle(), handshake_error)
          : connect::verify_peer(stream.native_handle(),
                                 {.trust_domain = context_.certificates.trust_domain()});
  if (!verdict) {
    refuse(connect::to_string(verdict.refusal), verdict.detail, peer_address);
    co_return;
  }

  auto asked = co_await (runtime::run_on(context_.consul_executor,
                                         context_.authorizer.authorize(
                                             target_.service, *verdict.peer,
                                             connect::peer_serial(stream.native_handle()))) ||
                         cut_off.async_wait(use_tuple));
  if (asked.index() == 1) {
    co_return;  // cut off by the shutdown while authorization was asked
  }
  const auto& decision = std::get<0>(asked);
  if (!decision.authorized) {
    context_.metrics.authorization_denied(connect::to_string(decision.source));
    // Counted by whose verdict it was: an agent that could not decide is not a denied caller.
    refuse(connect::refusal_reason(decision),
           decision.reason.empty() ? decision.detail : decision.reason, verdict.peer->uri());
    if (target_.mode == ListenerMode::http && stream.next_layer().is_open()) {
      co_await (answer_refused(stream,
                               connect::refusal_answer(decision, target_.service, *verdict.peer)) ||
                cut_off.async_wait(use_tuple));
    }
    co_return;
  }
  context_.metrics.handshake(metrics_.listener, "accepted",
                             connect::resumed(stream.native_handle()) ? "resumed" : "");
  if (target_.mode == ListenerMode::http) {
    // caught(): a failure inside the exchanges (not an answer they give) ends this
    // connection now. Thrown under `||`, it would not cancel the cut-off but wait for it
    // (a drain's), the caller held with no answer, and then be dropped.
    const auto served =
        co_await (runtime::caught(serve_http(stream, *verdict.peer,
                                             connect::peer_serial(stream.native_handle()), thread,
                                             exchanges)) ||
                  cut_off.async_wait(use_tuple));
    if (served.index() == 0 && std::get<0>(served)) {
      // Limited: a caller's request may be what fails (one per connection at most).
      log::write_limited(
          log::Level::error, "sidecar.inbound.connection_failed", "exchanges",
          {{"peer", verdict.peer->uri()}, {"error", runtime::describe(std::get<0>(served))}});
    }
  } else {
    co_await pipe_to_local(stream, local);
  }
}

asio::awaitable<void> InboundListener::pipe_to_local(TlsStream& tls, TcpSocket& local) {
  const auto& settings = context_.settings;
  asio::steady_timer deadline(co_await asio::this_coro::executor);
  deadline.expires_after(settings.connect_timeout);
  auto connected =
      co_await (local.async_connect(target_.local, use_tuple) || deadline.async_wait(use_tuple));
  if (connected.index() == 1 || std::get<0>(std::get<0>(connected))) {
    const std::string why = connected.index() == 1 ? std::string("timeout")
                                                   : std::get<0>(std::get<0>(connected)).message();
    log::write_limited(log::Level::warn, "sidecar.inbound.local_unreachable", "local",
                       {{"local", target_.local.address().to_string() + ":" +
                                      std::to_string(target_.local.port())},
                        {"error", why}});
    co_return;
  }
  set_no_delay(local);

  metrics_.active->Increment();
  metrics_.total->Increment();
  co_await splice(tls, local, settings.idle_timeout, metrics_.bytes_from_client,
                  metrics_.bytes_to_client);
  metrics_.active->Decrement();
}

}  // namespace coromesh::sidecar
