// http/flat_write.hpp writes a message in one buffer: byte for byte what Beast's
// serializer writes for it (the client's requests and coromesh-sidecar's re-framed
// answers went through that serializer before, and peers see no difference).
#include "coromesh/http/flat_write.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http/write.hpp>
#include <sstream>
#include <string>

namespace coromesh::http {
namespace {

template <class Message>
std::string as_beast_writes_it(const Message& message) {
  std::ostringstream out;
  out << message;
  return out.str();
}

std::string flat(const Request& request) {
  std::string out = "kept|";  // appended: what the buffer held stays
  append_request(request, out);
  return out;
}

std::string flat(const Response& response) {
  std::string out = "kept|";
  append_response_as_is(response, out);
  return out;
}

TEST(FlatWrite, RequestsAreWrittenAsBeastWritesThem) {
  Request get(Verb::get, "/api/v1/add?a=1&b=2", 11);
  get.set(Field::host, "127.0.0.1:8080");
  get.set("x-coromesh-deadline-ms", "1500");
  get.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  get.insert("X-Repeated", "one");
  get.insert("X-Repeated", "two");

  Request post(Verb::post, "/compute", 11);
  post.set(Field::content_type, "application/json");
  post.body() = R"({"expression":"1+1"})" + std::string(70'000, ' ');
  post.prepare_payload();

  Request old(Verb::put, "/v", 10);
  old.body() = "x";
  old.prepare_payload();

  Request custom;
  custom.method_string("PURGE");
  custom.target("/cache");
  custom.version(11);

  for (const auto& request : {get, post, old, custom}) {
    EXPECT_EQ(flat(request), "kept|" + as_beast_writes_it(request));
  }
}

TEST(FlatWrite, ResponsesAreWrittenAsBeastWritesThemFieldsAsTheyAre) {
  Response ok(Status::ok, 11);
  ok.set(Field::content_type, "application/json");
  ok.body() = R"({"result":9})";
  ok.prepare_payload();

  Response reason(Status::service_unavailable, 11);
  reason.reason("Draining");
  reason.keep_alive(false);
  reason.body() = "later";
  reason.prepare_payload();

  Response old(Status::not_found, 10);
  old.body() = "no";
  old.prepare_payload();

  // An answer to HEAD: the length of a body that is not sent.
  Response head(Status::ok, 11);
  head.content_length(10);

  // No length field and none added (the serializer adds none either).
  Response no_content(Status::no_content, 11);

  for (const auto& response : {ok, reason, old, head, no_content}) {
    EXPECT_EQ(flat(response), "kept|" + as_beast_writes_it(response));
  }
}

}  // namespace
}  // namespace coromesh::http
