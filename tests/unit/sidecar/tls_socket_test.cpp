// TlsSocket over loopback with certificates from a test CA (Connect's shape): handshake
// and the peer check, both directions, and each way a stream ends — close_notify and a
// bare FIN — leaving the other direction writable (the pumps' half-close).
#include "src/tls_socket.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <csignal>
#include <optional>

#include "coromesh/connect/peer_serial.hpp"
#include "coromesh/connect/peer_verifier.hpp"
#include "coromesh/connect/tls_contexts.hpp"
#include "test_certificate_authority.hpp"

namespace coromesh::sidecar {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);  // as coromesh-sidecar's main() does
  return true;
}();

std::span<const std::byte> bytes(std::string_view text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

struct Pair {
  asio::io_context io;
  testing::TestCertificateAuthority ca;
  std::unique_ptr<TlsSocket> server, client;

  Pair() {
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket client_socket(io), server_socket(io);
    client_socket.connect(acceptor.local_endpoint());
    acceptor.accept(server_socket);
    server = std::make_unique<TlsSocket>(
        std::move(server_socket),
        connect::make_tls_context(connect::TlsRole::server, ca.leaf("b"), ca.roots()),
        TlsSocket::Role::server);
    client = std::make_unique<TlsSocket>(
        std::move(client_socket),
        connect::make_tls_context(connect::TlsRole::client, ca.leaf("a"), ca.roots()),
        TlsSocket::Role::client);
  }

  // Runs `server_side` and `client_side` to completion (at most 5s).
  void run(std::function<asio::awaitable<void>()> server_side,
           std::function<asio::awaitable<void>()> client_side) {
    int done = 0;
    asio::co_spawn(io, std::move(server_side), [&](std::exception_ptr e) {
      EXPECT_FALSE(e);
      ++done;
    });
    asio::co_spawn(io, std::move(client_side), [&](std::exception_ptr e) {
      EXPECT_FALSE(e);
      ++done;
    });
    io.run_for(5s);
    EXPECT_EQ(done, 2);
  }
};

asio::awaitable<std::string> read_to_end(TlsSocket& socket, boost::system::error_code& end) {
  std::string text;
  std::array<std::byte, 4096> buffer{};
  for (;;) {
    auto [ec, n] = co_await socket.read_some(buffer);
    text.append(reinterpret_cast<const char*>(buffer.data()), n);
    if (ec) {
      end = ec;
      co_return text;
    }
  }
}

TEST(TlsSocket, HandshakesAndCarriesBytesWithAHalfCloseEachWay) {
  Pair p;
  const std::string request(100'000, 'r');
  std::string at_server, at_client;
  boost::system::error_code server_end, client_end;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        const auto peer =
            connect::verify_peer(p.server->native_handle(), {.trust_domain = p.ca.trust_domain()});
        EXPECT_TRUE(peer) << peer.detail;
        // The client's leaf is the CA's second (serial 102 = 0x66), in Consul's spelling.
        EXPECT_EQ(connect::peer_serial(p.server->native_handle()), "66");
        at_server = co_await read_to_end(*p.server, server_end);
        // The client's half-close ended its stream; ours is still open.
        auto [ec, n] = co_await p.server->write_all(bytes("answer"));
        EXPECT_FALSE(ec);
        p.server->shutdown_send();
      },
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.client->handshake());
        const auto peer = connect::verify_peer(
            p.client->native_handle(), {.trust_domain = p.ca.trust_domain(), .service = "b"});
        EXPECT_TRUE(peer) << peer.detail;
        auto [ec, n] = co_await p.client->write_all(bytes(request));
        EXPECT_FALSE(ec);
        EXPECT_EQ(n, request.size());
        p.client->shutdown_send();
        at_client = co_await read_to_end(*p.client, client_end);
      });
  EXPECT_EQ(at_server, request);
  EXPECT_EQ(server_end, asio::error::eof) << server_end.message();
  EXPECT_EQ(at_client, "answer");
  EXPECT_EQ(client_end, asio::error::eof) << client_end.message();
}

TEST(TlsSocket, IsAnAsioStreamThatBeastSpeaksHttpOn) {
  // The public listener's http mode reads and writes HTTP with Beast on a TlsSocket.
  namespace bhttp = boost::beast::http;
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  Pair p;
  std::string body(200 * 1024, 'x');  // many TLS records: reads and writes wait in between
  for (std::size_t i = 0; i < body.size(); i += 97) {
    body[i] = static_cast<char>('a' + i % 26);
  }
  std::string received_target, received_body;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        boost::beast::flat_buffer buffer;
        bhttp::request<bhttp::string_body> request;
        auto [read_error, n] = co_await bhttp::async_read(*p.server, buffer, request, use_tuple);
        EXPECT_FALSE(read_error) << read_error.message();
        received_target = std::string(request.target());
        bhttp::response<bhttp::string_body> response(bhttp::status::ok, 11);
        response.body() = request.body();
        response.prepare_payload();
        auto [write_error, m] = co_await bhttp::async_write(*p.server, response, use_tuple);
        EXPECT_FALSE(write_error) << write_error.message();
      },
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.client->handshake());
        bhttp::request<bhttp::string_body> request(bhttp::verb::post, "/echo", 11);
        request.body() = body;
        request.prepare_payload();
        auto [write_error, n] = co_await bhttp::async_write(*p.client, request, use_tuple);
        EXPECT_FALSE(write_error) << write_error.message();
        boost::beast::flat_buffer buffer;
        bhttp::response<bhttp::string_body> response;
        auto [read_error, m] = co_await bhttp::async_read(*p.client, buffer, response, use_tuple);
        EXPECT_FALSE(read_error) << read_error.message();
        received_body = response.body();
      });
  EXPECT_EQ(received_target, "/echo");
  EXPECT_TRUE(received_body == body) << "the body came back intact";
}

// Counts the read() calls OpenSSL makes on a TlsSocket's descriptor (those that return
// EAGAIN too): the syscalls the read path costs.
long count_reads(BIO* bio, int operation, const char*, std::size_t, int, long, int result,
                 std::size_t*) {
  if (operation == (BIO_CB_READ | BIO_CB_RETURN)) {
    ++*reinterpret_cast<int*>(BIO_get_callback_arg(bio));
  }
  return (operation & BIO_CB_RETURN) != 0 ? result : 1;
}

void count_reads_into(TlsSocket& socket, int& reads) {
  BIO* bio = SSL_get_rbio(socket.native_handle());
  BIO_set_callback_arg(bio, reinterpret_cast<char*>(&reads));
  BIO_set_callback_ex(bio, count_reads);
}

// For a socket waiting for its next record without having asked OpenSSL: its record
// buffer (~17 KiB) must be freed already, as OpenSSL frees it when a read() returns
// EAGAIN, so that an idle connection holds none.
void expect_no_read_buffer(TlsSocket& waiting) {
  const auto heap_while_waiting = mallinfo2().uordblks;
  SSL_free_buffers(waiting.native_handle());
  EXPECT_LT(heap_while_waiting - mallinfo2().uordblks, 4096U)
      << "an idle connection holds a read buffer";
}

// One read_some (the pumps) or one async_read_some (Beast) of whatever is there.
asio::awaitable<std::string> read_once(TlsSocket& socket, bool as_asio_stream) {
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  if (as_asio_stream) {
    n = co_await socket.async_read_some(asio::buffer(buffer), asio::use_awaitable);
  } else {
    boost::system::error_code ec;
    std::tie(ec, n) = co_await socket.read_some(std::as_writable_bytes(std::span(buffer)));
    EXPECT_FALSE(ec) << ec.message();
  }
  co_return std::string(buffer.data(), n);
}

// Read-ahead takes both of two records already in the socket with one read(), and the
// second is then delivered from OpenSSL's buffer (nothing more arrives: a read that
// waited on the socket would hang); a read after data waits for the socket before
// calling read(), so a record that arrives later costs one read() and no EAGAIN, and
// holds no record buffer while it waits.
void expect_one_read_per_arrival(bool as_asio_stream) {
  Pair p;
  int reads = 0;
  std::string first, second, third;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        co_await p.server->write_all(bytes("go"));
        auto& socket = p.server->next_layer();
        asio::steady_timer poll(socket.get_executor());
        // Two records of 5 + 1 (type) + 16 (tag) bytes around "first" and "second".
        constexpr std::size_t kBothRecords = 22 + 5 + 22 + 6;
        for (int i = 0; i < 5000 && socket.available() < kBothRecords; ++i) {
          poll.expires_after(1ms);
          co_await poll.async_wait(asio::use_awaitable);
        }
        EXPECT_EQ(socket.available(), kBothRecords);
        count_reads_into(*p.server, reads);
        first = co_await read_once(*p.server, as_asio_stream);
        EXPECT_EQ(socket.available(), 0U) << "the second record was left in the socket";
        second = co_await read_once(*p.server, as_asio_stream);
        EXPECT_EQ(reads, 1);
        co_await p.server->write_all(bytes("more"));
        reads = 0;
        third = co_await read_once(*p.server, as_asio_stream);
        EXPECT_EQ(reads, 1) << "read() calls for one record that arrived while waiting";
        expect_no_read_buffer(*p.client);  // waiting for our close_notify
        p.server->shutdown_send();
      },
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.client->handshake());
        EXPECT_EQ(co_await read_once(*p.client, false), "go");
        co_await p.client->write_all(bytes("first"));
        co_await p.client->write_all(bytes("second"));
        EXPECT_EQ(co_await read_once(*p.client, false), "more");
        expect_no_read_buffer(*p.server);  // waiting for "third"
        co_await p.client->write_all(bytes("third"));
        boost::system::error_code end;
        co_await read_to_end(*p.client, end);
        EXPECT_EQ(end, asio::error::eof) << end.message();
      });
  EXPECT_EQ(first, "first");
  EXPECT_EQ(second, "second");
  EXPECT_EQ(third, "third");
}

TEST(TlsSocket, ReadSomeTakesRecordsWithOneReadEachAndStrandsNone) {
  expect_one_read_per_arrival(false);
}

TEST(TlsSocket, AsyncReadSomeTakesRecordsWithOneReadEachAndStrandsNone) {
  expect_one_read_per_arrival(true);
}

TEST(TlsSocket, AClientWaitingAfterItsFirstAnswerHoldsNoReadBuffer) {
  // The upstream listener's side of a kept-alive connection: request, then the answer
  // (after the server's session tickets), then idle.
  Pair p;
  bool client_waiting = false;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        EXPECT_EQ(co_await read_once(*p.server, false), "request");
        co_await p.server->write_all(bytes("answer"));
        asio::steady_timer poll(p.server->get_executor());
        for (int i = 0; i < 5000 && !client_waiting; ++i) {
          poll.expires_after(1ms);
          co_await poll.async_wait(asio::use_awaitable);
        }
        expect_no_read_buffer(*p.client);
        p.server->shutdown_send();
      },
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.client->handshake());
        co_await p.client->write_all(bytes("request"));
        EXPECT_EQ(co_await read_once(*p.client, false), "answer");
        client_waiting = true;
        boost::system::error_code end;
        co_await read_to_end(*p.client, end);
      });
}

// The error queue is emptied only when something is in it (OpenSSL 3's ERR_clear_error
// costs ~800 instructions even on an empty queue): an error some other OpenSSL call left in
// this thread's queue must still not be taken for a read's or a write's own, which
// SSL_get_error() would do (SSL_ERROR_SSL for a read that only has to wait).
TEST(TlsSocket, AnErrorLeftInTheThreadsQueueIsNotTakenForAReadsOrAWritesOwn) {
  Pair p;
  std::string at_server;
  boost::system::error_code read_error, write_error;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        ERR_raise(ERR_LIB_SSL, SSL_R_BAD_PACKET);  // someone else's, left behind
        // Nothing has come yet (the client waits): SSL_read wants to read, then reads.
        std::array<std::byte, 64> buffer{};
        auto [ec, n] = co_await p.server->read_some(buffer);
        read_error = ec;
        at_server.assign(reinterpret_cast<const char*>(buffer.data()), n);
        ERR_raise(ERR_LIB_SSL, SSL_R_BAD_PACKET);
        std::tie(write_error, std::ignore) = co_await p.server->write_all(bytes("answer"));
        p.server->shutdown_send();
      },
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.client->handshake());
        asio::steady_timer later(p.client->get_executor());
        later.expires_after(50ms);
        co_await later.async_wait(asio::use_awaitable);
        co_await p.client->write_all(bytes("request"));
        boost::system::error_code end;
        EXPECT_EQ(co_await read_to_end(*p.client, end), "answer");
      });
  EXPECT_FALSE(read_error) << read_error.message();
  EXPECT_EQ(at_server, "request");
  EXPECT_FALSE(write_error) << write_error.message();
  ERR_clear_error();
}

TEST(TlsSocket, APeersBareFinEndsItsStreamAndLeavesOursWritable) {
  Pair p;
  std::string at_server, at_client;
  boost::system::error_code server_end, client_end;
  p.run(
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.server->handshake());
        at_server = co_await read_to_end(*p.server, server_end);
        auto [ec, n] = co_await p.server->write_all(bytes("still here"));
        EXPECT_FALSE(ec) << ec.message();
        p.server->shutdown_send();
      },
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await p.client->handshake());
        co_await p.client->write_all(bytes("hi"));
        // A FIN without close_notify, as a client doing shutdown(SHUT_WR) on its socket.
        p.client->next_layer().shutdown(tcp::socket::shutdown_send);
        at_client = co_await read_to_end(*p.client, client_end);
      });
  EXPECT_EQ(at_server, "hi");
  EXPECT_EQ(server_end, asio::error::eof);
  EXPECT_EQ(at_client, "still here");
}

TEST(TlsSocket, AClientOfAnotherCaFailsTheHandshakeAsAnUntrustedChain) {
  Pair p;
  testing::TestCertificateAuthority other(p.ca.trust_domain(), "other-root");
  tcp::acceptor acceptor(p.io, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket client_socket(p.io), server_socket(p.io);
  client_socket.connect(acceptor.local_endpoint());
  acceptor.accept(server_socket);
  TlsSocket server(
      std::move(server_socket),
      connect::make_tls_context(connect::TlsRole::server, p.ca.leaf("b"), p.ca.roots()),
      TlsSocket::Role::server);
  TlsSocket client(
      std::move(client_socket),
      connect::make_tls_context(connect::TlsRole::client, other.leaf("a"), p.ca.roots()),
      TlsSocket::Role::client);
  connect::PeerVerification verdict;
  p.run(
      [&]() -> asio::awaitable<void> {
        const auto ec = co_await server.handshake();
        EXPECT_TRUE(ec);
        verdict = connect::classify_handshake_failure(server.native_handle(), ec);
      },
      [&]() -> asio::awaitable<void> {
        co_await client.handshake();  // TLS 1.3: the client learns of it afterwards
        boost::system::error_code end;
        co_await read_to_end(client, end);
        EXPECT_TRUE(end);
      });
  EXPECT_FALSE(verdict);
  EXPECT_EQ(verdict.refusal, connect::PeerRefusal::untrusted_chain) << verdict.detail;
}

// A cancellation that arrives between an async_read_some's initiation and its first step
// (posted: see IoOp) must still end it. `||` emits it at once when its other side
// completes, e.g. answer_refused's deadline firing in that moment; lost, the read would
// wait for a byte from a peer that may never send one.
TEST(TlsSocket, ACancellationBeforeTheFirstStepOfAnAsyncReadEndsIt) {
  Pair p;
  p.run([&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.server->handshake()); },
        [&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.client->handshake()); });
  p.io.restart();
  asio::cancellation_signal cancel;
  std::optional<boost::system::error_code> read_end;
  std::array<char, 64> buffer{};
  p.client->async_read_some(
      asio::buffer(buffer),
      asio::bind_cancellation_slot(
          cancel.slot(), [&](boost::system::error_code ec, std::size_t) { read_end = ec; }));
  cancel.emit(asio::cancellation_type::terminal);  // the first step is still queued
  // The server sends nothing: only the cancellation can end the read. The bound only
  // keeps a failure from hanging the test.
  for (int i = 0; i < 300 && !read_end; ++i) {
    p.io.run_for(10ms);
  }
  ASSERT_TRUE(read_end) << "the cancellation was lost: the read still waits for the peer";
  EXPECT_EQ(*read_end, asio::error::operation_aborted) << read_end->message();
}

// What drain_exchanges() does to a connection waiting for its next request: cancel() the
// socket. Arriving between an async_read_some's initiation and its first step, it must
// still end the read; lost, a drained keep-alive connection waits for a request until
// its idle timeout or the drain's cut-off, long after the drain asked it to close.
TEST(TlsSocket, ASocketCancelBeforeTheFirstStepOfAnAsyncReadEndsIt) {
  Pair p;
  p.run([&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.server->handshake()); },
        [&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.client->handshake()); });
  p.io.restart();
  std::optional<boost::system::error_code> read_end;
  std::array<char, 64> buffer{};
  p.client->async_read_some(asio::buffer(buffer),
                            [&](boost::system::error_code ec, std::size_t) { read_end = ec; });
  boost::system::error_code ignored;
  p.client->next_layer().cancel(ignored);  // as drain_exchanges: nothing posted, at once
  // The server sends nothing: only the cancel can end the read. The bound only keeps a
  // failure from hanging the test.
  for (int i = 0; i < 300 && !read_end; ++i) {
    p.io.run_for(10ms);
  }
  ASSERT_TRUE(read_end) << "the cancel was lost: the read still waits for the peer";
  EXPECT_EQ(*read_end, asio::error::operation_aborted) << read_end->message();
}

// A descriptor number freed by a close (a drain's cut-off, a shed handshake) is the next
// socket's, on any thread: one accepted or dialled meanwhile. A TlsSocket whose socket was
// closed must never hand its number to OpenSSL again, or it reads another connection's
// bytes and writes its own records into it. Here the number is taken at once by one end
// of a socket pair, whose other end has bytes waiting for it.
struct Reused {
  int near = -1;
  int far = -1;
  explicit Reused(int number) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    far = ::fcntl(fds[1], F_DUPFD, number + 1);  // anywhere but `number`
    ::close(fds[1]);
    if (fds[0] != number) {
      EXPECT_EQ(::dup2(fds[0], number), number);
      ::close(fds[0]);
    }
    near = number;
    EXPECT_EQ(::send(far, "theirs", 6, MSG_NOSIGNAL), 6);
  }
  ~Reused() {
    ::close(near);
    ::close(far);
  }
  // What the reused descriptor still has to read (all of "theirs" if untouched).
  std::string unread() const {
    char text[64];
    const auto n = ::recv(near, text, sizeof text, MSG_DONTWAIT);
    return n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string();
  }
  // What was written into the reused descriptor (nothing, if untouched).
  std::size_t written() const {
    char text[4096];
    const auto n = ::recv(far, text, sizeof text, MSG_DONTWAIT);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }
};

TEST(TlsSocket, AfterItsSocketIsClosedAHalfCloseTouchesNoDescriptor) {
  Pair p;
  p.run([&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.server->handshake()); },
        [&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.client->handshake()); });
  const int number = p.client->next_layer().native_handle();
  p.client->next_layer().close();  // the registry's cut-off
  const Reused reused(number);
  p.client->shutdown_send();  // answer_refused's last step, after its write was cut off
  EXPECT_EQ(reused.written(), 0U) << "a close_notify went into another connection";
  EXPECT_EQ(reused.unread(), "theirs");
}

TEST(TlsSocket, AnAsyncReadWhoseSocketIsClosedBeforeItsFirstStepTouchesNoDescriptor) {
  Pair p;
  p.run([&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.server->handshake()); },
        [&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.client->handshake()); });
  p.io.restart();
  std::optional<boost::system::error_code> read_end;
  std::array<char, 64> buffer{};
  p.client->async_read_some(asio::buffer(buffer),
                            [&](boost::system::error_code ec, std::size_t) { read_end = ec; });
  const int number = p.client->next_layer().native_handle();
  p.client->next_layer().close();
  const Reused reused(number);
  for (int i = 0; i < 300 && !read_end; ++i) {
    p.io.run_for(10ms);
  }
  ASSERT_TRUE(read_end);
  EXPECT_TRUE(*read_end) << "a closed socket's read succeeded";
  EXPECT_EQ(reused.unread(), "theirs") << "the read took another connection's bytes";
}

// An answer written after the cut-off closed the socket (forward's result came in the
// same moment): Beast's async_write begins on the closed socket.
TEST(TlsSocket, AnAsyncWriteBegunAfterItsSocketWasClosedTouchesNoDescriptor) {
  Pair p;
  p.run([&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.server->handshake()); },
        [&]() -> asio::awaitable<void> { EXPECT_FALSE(co_await p.client->handshake()); });
  p.io.restart();
  const int number = p.client->next_layer().native_handle();
  p.client->next_layer().close();
  const Reused reused(number);
  std::optional<boost::system::error_code> write_end;
  p.client->async_write_some(asio::buffer("ours", 4),
                             [&](boost::system::error_code ec, std::size_t) { write_end = ec; });
  for (int i = 0; i < 300 && !write_end; ++i) {
    p.io.run_for(10ms);
  }
  ASSERT_TRUE(write_end);
  EXPECT_TRUE(*write_end) << "a closed socket's write succeeded";
  EXPECT_EQ(reused.written(), 0U) << "our record went into another connection";
}

}  // namespace
}  // namespace coromesh::sidecar
