#include "coromesh/http/router.hpp"

#include <gtest/gtest.h>

namespace coromesh::http {
namespace {

Handler noop() {
  return [](RequestContext&) -> boost::asio::awaitable<Response> { co_return Response{}; };
}

TEST(Router, MatchesLiteralAndParameterSegments) {
  Router router;
  router.add(Verb::get, "/health", "health", noop());
  router.add(Verb::get, "/items/{id}/parts/{part}", "part", noop());
  auto health = router.match(Verb::get, "/health");
  ASSERT_NE(health.route, nullptr);
  EXPECT_EQ(health.route->operation, "health");
  auto part = router.match(Verb::get, "/items/a%20b/parts/7");
  ASSERT_NE(part.route, nullptr);
  ASSERT_EQ(part.params.size(), 2u);
  EXPECT_EQ(part.params[0].first, "id");
  EXPECT_EQ(part.params[0].second, "a b");
  EXPECT_EQ(part.params[1].second, "7");
}

TEST(Router, UnknownPathHasNoRouteAndNoAllow) {
  Router router;
  router.add(Verb::get, "/health", "health", noop());
  auto m = router.match(Verb::get, "/nope");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_TRUE(m.allow.empty());
  EXPECT_EQ(router.match(Verb::get, "/health/extra").route, nullptr);
}

TEST(Router, OtherMethodListsAllowedOnes) {
  Router router;
  router.add(Verb::get, "/x", "get_x", noop());
  router.add(Verb::post, "/x", "post_x", noop());
  auto m = router.match(Verb::delete_, "/x");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allow, "GET, HEAD, POST");
}

TEST(Router, HeadIsServedByGet) {
  Router router;
  router.add(Verb::get, "/x", "get_x", noop());
  auto m = router.match(Verb::head, "/x");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->operation, "get_x");
}

TEST(Router, RejectsMalformedAndDuplicateRoutes) {
  Router router;
  EXPECT_THROW(router.add(Verb::get, "no-slash", "a", noop()), std::invalid_argument);
  EXPECT_THROW(router.add(Verb::get, "/a/{broken", "a", noop()), std::invalid_argument);
  EXPECT_THROW(router.add(Verb::get, "/a", "a", Handler{}), std::invalid_argument);
  router.add(Verb::get, "/a/{id}", "a", noop());
  EXPECT_THROW(router.add(Verb::get, "/a/{id}", "b", noop()), std::invalid_argument);
}

TEST(Router, BadEscapeInParameterDoesNotMatch) {
  Router router;
  router.add(Verb::get, "/items/{id}", "item", noop());
  EXPECT_EQ(router.match(Verb::get, "/items/%zz").route, nullptr);
  EXPECT_EQ(router.match(Verb::get, "/items/%4").route, nullptr);
  EXPECT_EQ(router.match(Verb::get, "/items/").route, nullptr);
}

TEST(PercentDecode, DecodesAndRejectsMalformedEscapes) {
  std::string out;
  EXPECT_TRUE(percent_decode("a%2Fb+c", out));
  EXPECT_EQ(out, "a/b+c");
  EXPECT_TRUE(percent_decode("a+c", out, true));
  EXPECT_EQ(out, "a c");
  EXPECT_FALSE(percent_decode("%", out));
  EXPECT_FALSE(percent_decode("%g0", out));
  EXPECT_FALSE(percent_decode("ab%0", out));
}

}  // namespace
}  // namespace coromesh::http
