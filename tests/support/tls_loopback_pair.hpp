#pragma once

// Both ends of a loopback mTLS connection in one process, for tests of the connect
// module: the two handshakes, each side's peer verification, one round trip of data.

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <string_view>

#include "coromesh/connect/peer_verifier.hpp"

namespace coromesh::testing {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using connect::PeerExpectation;
using connect::PeerVerification;

// Both ends of one loopback TLS connection and what each concluded about the other.
struct TlsPair {
  explicit TlsPair(asio::any_io_executor ex, ssl::context& server_ctx, ssl::context& client_ctx)
      : server(tcp::socket(ex), server_ctx), client(tcp::socket(ex), client_ctx) {}

  ssl::stream<tcp::socket> server;
  ssl::stream<tcp::socket> client;
  PeerVerification server_view;  // who the server thinks the client is
  PeerVerification client_view;  // who the client thinks the server is
  bool exchanged = false;        // a round trip of application data went through

  // One round trip over the open connection: "ping" from the client, "pong" back.
  asio::awaitable<bool> round_trip() {
    using namespace asio::experimental::awaitable_operators;
    auto tuple = asio::as_tuple(asio::use_awaitable);
    auto client_side = [&]() -> asio::awaitable<bool> {
      auto [write_ec, written] = co_await asio::async_write(client, asio::buffer("ping", 4), tuple);
      std::array<char, 4> answer{};
      auto [read_ec, read] = co_await asio::async_read(client, asio::buffer(answer), tuple);
      co_return !write_ec && !read_ec && std::string_view(answer.data(), 4) == "pong";
    };
    auto server_side = [&]() -> asio::awaitable<bool> {
      std::array<char, 4> request{};
      auto [read_ec, read] = co_await asio::async_read(server, asio::buffer(request), tuple);
      if (read_ec) {
        co_return false;
      }
      auto [write_ec, written] = co_await asio::async_write(server, asio::buffer("pong", 4), tuple);
      co_return !write_ec;
    };
    auto [client_ok, server_ok] = co_await (client_side() && server_side());
    co_return client_ok&& server_ok;
  }
};

// Connects a client context to a server context over loopback and runs both handshakes
// and the peer checks; a refused side closes its socket (as the sidecar will), so the
// other end learns of it. Then tries one round trip (TLS 1.3 lets a client finish its
// handshake before the server has judged the client's certificate).
inline asio::awaitable<std::unique_ptr<TlsPair>> connect_pair(ssl::context& server_ctx,
                                                              ssl::context& client_ctx,
                                                              PeerExpectation server_expects,
                                                              PeerExpectation client_expects) {
  using namespace asio::experimental::awaitable_operators;
  auto ex = co_await asio::this_coro::executor;
  auto pair = std::make_unique<TlsPair>(ex, server_ctx, client_ctx);
  tcp::acceptor acceptor(ex, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto tuple = asio::as_tuple(asio::use_awaitable);

  auto server_side = [&]() -> asio::awaitable<void> {
    auto [accept_ec] = co_await acceptor.async_accept(pair->server.next_layer(), tuple);
    if (accept_ec) {
      pair->server_view.detail = accept_ec.message();
      co_return;
    }
    auto [ec] = co_await pair->server.async_handshake(ssl::stream_base::server, tuple);
    pair->server_view = ec ? connect::classify_handshake_failure(pair->server, ec)
                           : connect::verify_peer(pair->server, server_expects);
    if (!pair->server_view) {
      pair->server.next_layer().close();
    }
  };
  auto client_side = [&]() -> asio::awaitable<void> {
    auto [connect_ec] =
        co_await pair->client.next_layer().async_connect(acceptor.local_endpoint(), tuple);
    if (connect_ec) {
      pair->client_view.detail = connect_ec.message();
      co_return;
    }
    auto [ec] = co_await pair->client.async_handshake(ssl::stream_base::client, tuple);
    pair->client_view = ec ? connect::classify_handshake_failure(pair->client, ec)
                           : connect::verify_peer(pair->client, client_expects);
    if (!pair->client_view) {
      pair->client.next_layer().close();
    }
  };
  co_await (server_side() && client_side());
  if (pair->server_view && pair->client_view) {
    pair->exchanged = co_await pair->round_trip();
  }
  co_return pair;
}

}  // namespace coromesh::testing
