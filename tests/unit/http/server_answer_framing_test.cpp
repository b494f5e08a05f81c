// What a handler answers is framed as HTTP/1.1 requires whatever the handler put in it:
// 1xx, 204 and 304 answers carry no content (RFC 9110 §6.4.1), 1xx and 204 no
// Content-Length (§8.6), a 304 none it did not set itself. Sent with a body, a 204 leaves
// bytes that the client takes for the start of the next answer on the connection.

#include <gtest/gtest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>
#include <mutex>
#include <vector>

#include "coromesh/http/server.hpp"
#include "http_fetch.hpp"
#include "recording_observer.hpp"
#include "test_env.hpp"

namespace coromesh::http::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using namespace std::chrono_literals;

Response answer(Status status, std::string body) {
  Response res{status, 11};
  res.set(Field::content_type, "text/plain");
  res.body() = std::move(body);
  res.content_length(res.body().size());
  return res;
}

// A server whose handlers answer with statuses that allow no content, body or not.
class AnswerServer {
 public:
  explicit AnswerServer(ServerObserver* observer = nullptr) : pool_(1) {
    router_.add(Verb::get, "/no-content", "no_content",
                [](RequestContext&) -> asio::awaitable<Response> {
                  co_return answer(Status::no_content, "oops");
                });
    router_.add(Verb::get, "/not-modified", "not_modified",
                [](RequestContext&) -> asio::awaitable<Response> {
                  Response res{Status::not_modified, 11};
                  res.set(Field::etag, "\"v1\"");
                  co_return res;
                });
    router_.add(Verb::get, "/continue", "continue",
                [](RequestContext&) -> asio::awaitable<Response> {
                  co_return answer(Status::continue_, "");
                });
    router_.add(Verb::get, "/wrong-length", "wrong_length",
                [](RequestContext&) -> asio::awaitable<Response> {
                  auto res = answer(Status::ok, "a longer body");
                  res.body() = "short";  // changed after its length was set
                  co_return res;
                });
    router_.add(Verb::get, "/says-chunked", "says_chunked",
                [](RequestContext&) -> asio::awaitable<Response> {
                  Response res{Status::ok, 11};
                  res.set(Field::transfer_encoding, "chunked");
                  res.body() = "not chunked";
                  co_return res;
                });
    router_.add(Verb::get, "/hello", "hello", [](RequestContext&) -> asio::awaitable<Response> {
      co_return answer(Status::ok, "hello");
    });
    server_ = std::make_unique<Server>(pool_, router_, ServerLimits{}, observer);
    server_->listen("127.0.0.1", 0);
    server_->start();
    pool_.start();
  }
  ~AnswerServer() {
    pool_.terminate();
    pool_.join();
    pool_.destroy_abandoned_work();
  }
  std::string raw(const std::string& bytes) {
    return coromesh::testing::raw_exchange("127.0.0.1", server_->port(), bytes, 5s);
  }

 private:
  runtime::IoPool pool_;
  Router router_;
  std::unique_ptr<Server> server_;
};

// Parses `wire` as consecutive answers, as a client reading the connection would (the
// request methods tell the parser which answers have no body).
std::vector<Response> parse_answers(const std::string& wire, const std::vector<bool>& to_head) {
  std::vector<Response> answers;
  beast::flat_buffer buffer;
  auto copied = asio::buffer_copy(buffer.prepare(wire.size()), asio::buffer(wire));
  buffer.commit(copied);
  for (bool head : to_head) {
    beast::http::response_parser<beast::http::string_body> parser;
    parser.eager(true);
    parser.skip(head);
    beast::error_code ec;
    buffer.consume(parser.put(buffer.data(), ec));
    if (!ec && !parser.is_done()) {
      parser.put_eof(ec);
    }
    if (ec || !parser.is_done()) {
      break;
    }
    answers.push_back(parser.release());
  }
  return answers;
}

TEST(HttpServerAnswerFraming, A204WithABodyIsSentWithoutItAndTheNextAnswerStaysIntact) {
  AnswerServer server;
  auto wire = server.raw(
      "GET /no-content HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto answers = parse_answers(wire, {false, false});
  ASSERT_EQ(answers.size(), 2u) << wire;
  EXPECT_EQ(answers[0].result_int(), 204u) << wire;
  EXPECT_EQ(answers[0].find(Field::content_length), answers[0].end()) << wire;
  EXPECT_EQ(answers[1].result_int(), 200u) << wire;
  EXPECT_EQ(answers[1].body(), "hello") << wire;
}

TEST(HttpServerAnswerFraming, A304IsSentWithoutAContentLengthOfZero) {
  AnswerServer server;
  auto wire = server.raw("GET /not-modified HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(wire.starts_with("HTTP/1.1 304 Not Modified\r\n")) << wire;
  EXPECT_EQ(wire.find("Content-Length"), std::string::npos) << wire;
}

// Beast's prepare_payload() throws for a 204 with a body: the HEAD path called it, the
// exception escaped the connection, which closed unanswered and never counted the request.
TEST(HttpServerAnswerFraming, HeadOfA204WithABodyIsAnsweredAndCounted) {
  RecordingObserver observer;
  AnswerServer server(&observer);
  auto wire = server.raw("HEAD /no-content HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto answers = parse_answers(wire, {true});
  ASSERT_EQ(answers.size(), 1u) << wire;
  EXPECT_EQ(answers[0].result_int(), 204u) << wire;
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{204});
}

// Framing is the server's, not the handler's: the body a handler answers is what the
// client is told to read, whatever Content-Length or Transfer-Encoding the handler left
// in the answer. Trusted, a stale length left the client reading the next answer's
// bytes as this one's body (or this one's as the next answer): one request's answer
// corrupting another's, on a connection a sidecar may share between callers.
TEST(HttpServerAnswerFraming, TheBodyIsFramedAsItIsWhateverTheHandlerSaid) {
  AnswerServer server;
  for (const std::string path : {"/wrong-length", "/says-chunked"}) {
    auto wire = server.raw("GET " + path +
                           " HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    auto answers = parse_answers(wire, {false, false});
    ASSERT_EQ(answers.size(), 2u) << path << ":\n" << wire;
    EXPECT_EQ(answers[0].body(), path == "/wrong-length" ? "short" : "not chunked") << wire;
    EXPECT_EQ(answers[1].body(), "hello") << wire;
  }
  // HEAD is told the length of what GET would answer.
  auto wire = server.raw("HEAD /wrong-length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(wire.find("Content-Length: 5\r\n"), std::string::npos) << wire;
  EXPECT_TRUE(wire.ends_with("\r\n\r\n")) << wire;
}

// A 1xx is never a final answer: sent as one, the client would wait on for the real one.
TEST(HttpServerAnswerFraming, AnInformationalFinalAnswerIsTheHandlersFailure500) {
  AnswerServer server;
  auto wire = server.raw("GET /continue HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(wire.starts_with("HTTP/1.1 500 Internal Server Error\r\n")) << wire;
}

}  // namespace
}  // namespace coromesh::http::testing
