#include "upstream_listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "accept_loop.hpp"
#include "coromesh/connect/peer_verifier.hpp"
#include "coromesh/http/resolve.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/runtime/caught.hpp"
#include "inbound_listener.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

void close_quietly(TcpSocket& socket) {
  boost::system::error_code ignored;
  socket.close(ignored);
}

}  // namespace

struct UpstreamListener::Connected {
  std::unique_ptr<TlsStream> stream;  // keeps its TLS context
  connect::Pick pick;
};

UpstreamListener::UpstreamListener(SidecarContext& context, UpstreamSpec spec)
    : context_(context),
      spec_(std::move(spec)),
      metrics_(context.metrics.upstream(spec_.service)),
      watch_(context.consul, spec_.service),
      balancer_(connect::LoadBalancerOptions{.policy = context.settings.balance}) {}

UpstreamListener::~UpstreamListener() = default;

std::size_t UpstreamListener::endpoint_count() const {
  const auto snapshot = watch_.snapshot();
  return snapshot ? snapshot->size() : 0;
}

void UpstreamListener::start(runtime::IoPool& pool) {
  acceptor_.emplace(context_.consul_executor);
  const tcp::endpoint endpoint = resolve_now({spec_.bind_address, spec_.port});
  acceptor_->open(endpoint.protocol());
  acceptor_->set_option(tcp::acceptor::reuse_address(true));
  acceptor_->bind(endpoint);
  acceptor_->listen(asio::socket_base::max_listen_connections);
  port_ = acceptor_->local_endpoint().port();
  if (spec_.mode == ListenerMode::http) {
    start_http(pool);
  }
  log::info("sidecar.upstream.listening", {{"upstream", spec_.service},
                                           {"address", spec_.bind_address},
                                           {"port", port_},
                                           {"mode", to_string(spec_.mode)}});
  // The watch's frame refers to this object: it holds a reference until it returns.
  asio::co_spawn(
      context_.consul_executor, [self = shared_from_this()]() { return self->watch_.run(); },
      asio::bind_cancellation_slot(stop_watch_.slot(),
                                   runtime::LogEscapedException{"sidecar.upstream.watch"}));
  runtime::spawn(
      context_.consul_executor,
      [](std::shared_ptr<UpstreamListener> self, runtime::IoPool& pool) -> asio::awaitable<void> {
        co_await self->accept_loop(pool);
      }(shared_from_this(), pool),
      "sidecar.upstream.accept");
}

void UpstreamListener::stop() {
  if (stopped_.exchange(true)) {
    return;
  }
  if (acceptor_) {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
  }
  stop_watch_.emit(asio::cancellation_type::terminal);
}

void UpstreamListener::retire() {
  stop();
  // The registry's drain is posted to each connection's executor and refers to the
  // registry only (the Sidecar's, outliving the io threads), never to this listener; a
  // connection that enters after this call sees stopped_ and drains itself (serve).
  //
  // Only http mode has a drain: its connections between requests close now, one with a
  // request in flight after that request's answer (Connection: close). A tcp-mode
  // connection runs on to its natural end, as Envoy's listener drain leaves TCP: a byte
  // stream has no point at which it can be ended without cutting something off, and it
  // still ends at --idle-timeout without traffic. The sidecar's --shutdown-grace is not
  // applied: it bounds a process's exit, and here the process goes on (a later shutdown
  // still finds these connections in the registry and cuts them off at its grace).
  context_.connections.begin_drain(this);
}

asio::awaitable<void> UpstreamListener::accept_loop(runtime::IoPool& pool) {
  const auto admit = [this](TcpSocket client, std::size_t thread) {
    auto executor = client.get_executor();
    runtime::spawn(
        executor,
        [](std::shared_ptr<UpstreamListener> self, TcpSocket socket, std::size_t on,
           ConnectionRegistry::Admission admission) -> asio::awaitable<void> {
          co_await self->serve(std::move(socket), on, std::move(admission));
        }(shared_from_this(), std::move(client), thread, context_.connections.admit()),
        "sidecar.upstream.connection");
  };
  const auto failed = [this](const boost::system::error_code& error) {
    log::write_limited(log::Level::warn, "sidecar.upstream.accept_failed", spec_.service,
                       {{"upstream", spec_.service}, {"error", error.message()}});
  };
  co_await accept_connections(*acceptor_, pool, {.admit = admit, .failed = failed});
}

asio::awaitable<connect::EndpointWatch::Snapshot> UpstreamListener::endpoints(
    std::chrono::steady_clock::time_point until) {
  if (auto now = watch_.snapshot()) {
    co_return now;
  }
  // Consul has not answered yet (the first moments after start-up): wait for it, as long
  // as for the first leaf (kStartupPatience, not the much shorter connect timeout), but
  // not past the deadline of the request that waits.
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  bool watch_ended = false;
  try {
    co_return co_await watch_.ready_until(
        std::min(until, std::chrono::steady_clock::now() +
                            std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                context_.settings.startup_patience())));
  } catch (const boost::system::system_error&) {
    watch_ended = true;
  }
  // ready() fails when the watch ends first: stop(), the sidecar's drain or the upstream's
  // removal, before Consul's first answer. For the caller that is no answer from Consul
  // (no endpoint: 503, or a closed connection in tcp mode), as when the patience runs out;
  // thrown on, it escaped serve()'s race with its cut-off, which waits for a success, and
  // left the connection without an answer until the cut-off, if one ever came. The
  // caller's own cancellation (that cut-off) stays one.
  throw_if_cancelled(cancellation);
  co_return watch_ended ? watch_.snapshot() : nullptr;
}

asio::awaitable<std::optional<UpstreamListener::Connected>> UpstreamListener::connect_upstream(
    TcpSocket& client) {
  const auto executor = co_await asio::this_coro::executor;
  // Cut off by a drain (serve), nothing below is the endpoint's fault: no failure is
  // counted or held against it.
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  const auto snapshot = co_await endpoints();
  if (!snapshot) {
    // No answer from Consul (its patience spent, or the watch ended by a drain): nothing
    // to dial, and no reason to wait for the leaf as well.
    context_.metrics.upstream_connect_failure(spec_.service, "no_endpoint");
    co_return std::nullopt;
  }
  // Our own leaf before any endpoint is picked: without it every dial would fail, and
  // each failure be held against a healthy endpoint (outlier ejection) for what is this
  // sidecar's state.
  const auto tls_context = co_await current_tls_context(context_.certificates, false,
                                                        context_.settings.startup_patience());
  if (!tls_context) {
    context_.metrics.upstream_connect_failure(spec_.service, "no_certificate_yet");
    log::write_limited(log::Level::warn, "sidecar.upstream.connect_failed", spec_.service,
                       {{"upstream", spec_.service},
                        {"reason", "no_certificate_yet"},
                        {"detail", "the leaf certificate has not arrived from Consul"}});
    co_return std::nullopt;
  }
  std::vector<std::string> tried;
  for (std::uint32_t attempt = 0; attempt < context_.settings.upstream_attempts; ++attempt) {
    auto pick = balancer_.pick(snapshot, tried);
    if (!pick) {
      context_.metrics.upstream_connect_failure(spec_.service, "no_endpoint");
      co_return std::nullopt;
    }
    const auto& endpoint = pick.endpoint();
    tried.push_back(endpoint.key);
    const auto started = std::chrono::steady_clock::now();
    auto fail = [&](std::string_view reason, std::string_view detail) {
      pick.done(std::chrono::steady_clock::now() - started, connect::Outcome::connect_failure);
      context_.metrics.upstream_connect_failure(spec_.service, reason);
      log::write_limited(log::Level::warn, "sidecar.upstream.connect_failed", spec_.service,
                         {{"upstream", spec_.service},
                          {"endpoint", endpoint.address + ":" + std::to_string(endpoint.port)},
                          {"reason", reason},
                          {"detail", detail}});
    };
    // A drain cancels this coroutine (serve): the lookup, the dial, the handshake and the
    // timer below end with it.
    TcpSocket dial(executor);
    std::unique_ptr<TlsStream> stream;
    asio::steady_timer deadline(executor, context_.settings.connect_timeout);
    // A host name is looked up within the connect timeout, as the connect itself is.
    auto resolved =
        co_await http::resolve_until(endpoint.address, endpoint.port, deadline.expiry());
    throw_if_cancelled(cancellation);
    if (!resolved) {
      fail("connect_timeout", "no address resolved for " + endpoint.address);
      continue;
    }
    if (resolved->first) {
      fail("bad_address", endpoint.address + ": " + resolved->first.message());
      continue;
    }
    auto dialed = co_await (asio::async_connect(dial, resolved->second, use_tuple) ||
                            deadline.async_wait(use_tuple));
    throw_if_cancelled(cancellation);
    if (dialed.index() == 1 || std::get<0>(std::get<0>(dialed))) {
      fail(dialed.index() == 1 ? "connect_timeout" : "connect_refused",
           dialed.index() == 1 ? "timeout" : std::get<0>(std::get<0>(dialed)).message());
      continue;
    }
    set_no_delay(dial);
    stream = std::make_unique<TlsStream>(std::move(dial), tls_context, TlsSocket::Role::client);
    sessions_->offer(stream->native_handle(), endpoint.key, tls_context);
    // The TCP connect is the peer's kernel's answer, the handshake its process's: each
    // has its own bound.
    deadline.expires_after(context_.settings.handshake_timeout);
    auto handshake = co_await (stream->handshake() || deadline.async_wait(use_tuple));
    throw_if_cancelled(cancellation);
    if (handshake.index() == 1) {
      fail("handshake_timeout", "no complete handshake before the deadline");
      continue;
    }
    const auto handshake_error = std::get<0>(handshake);
    const auto verdict =
        handshake_error
            ? connect::classify_handshake_failure(stream->native_handle(), handshake_error)
            : connect::verify_peer(stream->native_handle(),
                                   {.trust_domain = context_.certificates.trust_domain(),
                                    .service = endpoint.service});
    if (!verdict) {
      context_.metrics.handshake(metrics_.listener, "refused", connect::to_string(verdict.refusal));
      fail(connect::to_string(verdict.refusal), verdict.detail);
      continue;
    }
    context_.metrics.handshake(metrics_.listener, "accepted",
                               connect::resumed(stream->native_handle()) ? "resumed" : "");
    metrics_.connect_duration->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    co_return Connected{.stream = std::move(stream), .pick = std::move(pick)};
  }
  co_return std::nullopt;
}

asio::awaitable<void> UpstreamListener::serve(TcpSocket client, std::size_t thread,
                                              ConnectionRegistry::Admission admission) {
  const auto executor = co_await asio::this_coro::executor;
  set_no_delay(client);
  // In the drain's registry from the accept on, whatever the connection is waiting for:
  // Consul's first answer, the leaf certificate, the dial, the handshake, or (http mode)
  // the upstream's answer to a request in flight. None of those is on the client
  // socket, so closing it is not enough: the cut-off also fires `cut_off`, which cancels
  // whichever of them is pending (and with it the request to the upstream).
  asio::steady_timer cut_off(executor, asio::steady_timer::time_point::max());
  TlsStream* server = nullptr;  // set once connected (tcp mode)
  ExchangeControl exchanges;    // http mode
  const bool http_mode = spec_.mode == ListenerMode::http;
  const auto ticket = context_.connections.enter(
      executor,
      [&cut_off, &client, &server] {
        cut_off.cancel();
        close_quietly(client);
        if (server != nullptr) {
          close_quietly(server->next_layer());
        }
      },
      http_mode
          ? std::function<void()>([&exchanges, &client] { drain_exchanges(exchanges, client); })
          : nullptr,
      this);
  admission.release();
  if (http_mode && stopped_) {
    // Accepted before the listener stopped, in the registry only after its drain went
    // through (retire, or the sidecar's): drained here. Not yet waiting for a request, its
    // first answer is its last, as with any drain before the exchanges begin.
    drain_exchanges(exchanges, client);
  }
  if (http_mode) {
    exchanges.refused = metrics_.refusal_counter();
    exchanges.hung_up = metrics_.hang_up_counter();
    metrics_.active->Increment();
    metrics_.total->Increment();
    // caught(): a failure inside the exchanges (not an answer they give) ends this
    // connection now. Thrown under `||`, it would not cancel the cut-off but wait for it
    // (a drain's; a removed upstream's never comes), the client held with no answer, and
    // then be dropped.
    const auto served = co_await (runtime::caught(serve_http(client, thread, exchanges)) ||
                                  cut_off.async_wait(use_tuple));
    metrics_.active->Decrement();
    if (served.index() == 0 && std::get<0>(served)) {
      // Limited: a client's request may be what fails (one per connection at most).
      log::write_limited(
          log::Level::error, "sidecar.upstream.connection_failed", spec_.service,
          {{"upstream", spec_.service}, {"error", runtime::describe(std::get<0>(served))}});
    }
    co_return;
  }
  auto connecting = co_await (connect_upstream(client) || cut_off.async_wait(use_tuple));
  if (connecting.index() == 1 || !std::get<0>(connecting)) {
    co_return;  // cut off, or nothing to reach: closing the client tells it so
  }
  auto& connected = *std::get<0>(connecting);
  server = connected.stream.get();
  const auto started = std::chrono::steady_clock::now();
  metrics_.active->Increment();
  metrics_.total->Increment();
  co_await splice(client, *server, context_.settings.idle_timeout, metrics_.bytes_from_client,
                  metrics_.bytes_to_client);
  metrics_.active->Decrement();
  connected.pick.done(std::chrono::steady_clock::now() - started, connect::Outcome::success);
}

}  // namespace coromesh::sidecar
