// http::Client against callees that answer in ways a well-behaved server would not (or
// only rarely does): each ends the call with a clear, correctly classified outcome, and
// the pool keeps nothing such an exchange left behind.

#include <gtest/gtest.h>

#include <string>

#include "client_fixture.hpp"
#include "coromesh/http/client.hpp"

namespace coromesh::http {
namespace {

using namespace client_testing;

// Reads one request, then writes `raw` as the answer and keeps the connection open.
TestServer::Session answer_raw(std::string raw) {
  return [raw](beast::tcp_stream& stream, int) -> asio::awaitable<void> {
    beast::flat_buffer buffer;
    co_await read_request(stream, buffer);
    co_await asio::async_write(stream, asio::buffer(raw), use_tuple);
    co_await wait_for_close(stream);
  };
}

// RFC 9110 §15.2: a client must accept 1xx responses before the final one, even
// unexpected ones (a 100 Continue it did not ask for, a 103 Early Hints). The client
// returned the interim 100 as the answer: the caller saw status 100 (a RemoteError 100,
// the callee's failure, for an OperationClient) and the real 200 was dropped.
TEST_F(HttpClient, InterimResponsesAreSkippedForTheFinalOne) {
  TestServer server(ioc_, answer_raw("HTTP/1.1 100 Continue\r\n\r\n"
                                     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                                     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"));
  auto& http = client();
  run([&]() -> asio::awaitable<void> {
    auto response = co_await http.get(server.destination(), "/", 2s);
    EXPECT_EQ(response.result_int(), 200u);
    EXPECT_EQ(response.body(), "final");
  });
  EXPECT_EQ(http.idle_connections(), 1u);
}

// The interim responses arrive in reads of their own, with the final one later.
TEST_F(HttpClient, InterimResponsesInSeparateReadsAreSkipped) {
  TestServer server(ioc_, [](beast::tcp_stream& stream, int) -> asio::awaitable<void> {
    beast::flat_buffer buffer;
    co_await read_request(stream, buffer);
    const std::string interim = "HTTP/1.1 102 Processing\r\n\r\n";
    co_await asio::async_write(stream, asio::buffer(interim), use_tuple);
    co_await sleep_for(50ms);
    const std::string final_answer = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    co_await asio::async_write(stream, asio::buffer(final_answer), use_tuple);
    co_await wait_for_close(stream);
  });
  auto& http = client();
  run([&]() -> asio::awaitable<void> {
    auto response = co_await http.get(server.destination(), "/", 2s);
    EXPECT_EQ(response.result_int(), 201u);
    EXPECT_EQ(response.body(), "ok");
  });
}

// A 101 switches protocols, which this client never asks for: what follows is not HTTP.
TEST_F(HttpClient, AnUnaskedProtocolSwitchIsBadResponse) {
  TestServer server(ioc_, answer_raw("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                                     "Connection: Upgrade\r\n\r\n\x00\x00\x12"));
  auto& http = client();
  run([&]() -> asio::awaitable<void> {
    auto error = co_await call_error(http.get(server.destination(), "/", 2s));
    EXPECT_EQ(error.code(), ClientErrc::bad_response) << error.what();
  });
  EXPECT_EQ(http.idle_connections(), 0u);
}

// An endless stream of interim responses never becomes an answer: it is bounded like
// one header, not read until the deadline.
TEST_F(HttpClient, EndlessInterimResponsesAreBadResponse) {
  std::string flood;
  while (flood.size() < 200 * 1024) {
    flood += "HTTP/1.1 102 Processing\r\n\r\n";
  }
  TestServer server(ioc_, answer_raw(flood));
  auto& http = client();
  run([&]() -> asio::awaitable<void> {
    auto error = co_await call_error(http.get(server.destination(), "/", 5s));
    EXPECT_EQ(error.code(), ClientErrc::bad_response) << error.what();
  });
}

}  // namespace
}  // namespace coromesh::http
