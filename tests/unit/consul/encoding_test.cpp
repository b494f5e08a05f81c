#include "encoding.hpp"

#include <gtest/gtest.h>

namespace coromesh::consul::detail {
namespace {

using namespace std::chrono_literals;

TEST(ConsulEncoding, PercentEncodesAllButUnreserved) {
  EXPECT_EQ(url_encode("web-1_a.b~"), "web-1_a.b~");
  EXPECT_EQ(url_encode("shutting down"), "shutting%20down");
  EXPECT_EQ(url_encode("a/b?c=d&e#f"), "a%2Fb%3Fc%3Dd%26e%23f");
  EXPECT_EQ(url_encode("config/add qos", true), "config/add%20qos");
  EXPECT_EQ(url_encode("\xc3\xa9"), "%C3%A9");
}

TEST(ConsulEncoding, DecodesBase64) {
  EXPECT_EQ(base64_decode(""), "");
  EXPECT_EQ(base64_decode("Zg=="), "f");
  EXPECT_EQ(base64_decode("Zm8="), "fo");
  EXPECT_EQ(base64_decode("Zm9v"), "foo");
  EXPECT_EQ(base64_decode("AP8/+w=="), std::string("\x00\xff\x3f\xfb", 4));
}

TEST(ConsulEncoding, RejectsMalformedBase64) {
  EXPECT_FALSE(base64_decode("Zm9"));       // not a multiple of 4
  EXPECT_FALSE(base64_decode("Zm9!"));      // outside the alphabet
  EXPECT_FALSE(base64_decode("Z==="));      // too much padding
  EXPECT_FALSE(base64_decode("Zg==Zm9v"));  // padding before the end
  EXPECT_FALSE(base64_decode("Zg=v"));      // data after padding
}

TEST(ConsulEncoding, WritesGoDurations) {
  EXPECT_EQ(go_duration(1500ms), "1500ms");
  EXPECT_EQ(go_duration(0ms), "0ms");
}

}  // namespace
}  // namespace coromesh::consul::detail
