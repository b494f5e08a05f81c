#include "coromesh/config/address.hpp"

#include <gtest/gtest.h>

#include <string>

#include "coromesh/config/error.hpp"
#include "error_text.hpp"

namespace coromesh::config {
namespace {

using testing::rejection;

TEST(ParseHost, AcceptsNamesAndAddresses) {
  EXPECT_EQ(parse_host("localhost"), "localhost");
  EXPECT_EQ(parse_host("add-svc.service.consul"), "add-svc.service.consul");
  EXPECT_EQ(parse_host("10.0.0.7"), "10.0.0.7");
  EXPECT_EQ(parse_host("::1"), "::1");
  EXPECT_EQ(parse_host("[fe80::1]"), "fe80::1");
}

TEST(ParseHost, RejectsMalformedHosts) {
  for (const char* bad : {"", "-lead", "trail-.x", "a..b", "999.1.1.1", "1.2.3", "host name",
                          "under_score", "[::1", "[nope]", ":::"}) {
    EXPECT_EQ(rejection([bad] { parse_host(bad); }),
              "'" + std::string(bad) + "' is not a host name or IP address");
  }
  EXPECT_NE(rejection([] { parse_host(std::string(64, 'a') + ".com"); }), "<accepted>")
      << "a label is at most 63 characters";
}

// Was: the literal was checked with inet_pton on its C string, which ends at the first NUL,
// so "::1" followed by a NUL and anything else was taken for the address "::1" (and kept
// with its NUL and tail as the host).
TEST(ParseHost, RejectsALiteralFollowedByANul) {
  using namespace std::string_literals;
  for (const auto& bad : {"::1\0"s, "::1\0garbage"s, "[::1\0]"s, "fe80::1\0x"s}) {
    EXPECT_EQ(rejection([&bad] { parse_host(bad); }),
              quote_value(bad) + " is not a host name or IP address");
  }
  EXPECT_EQ(rejection([] { parse_host("::1\0"s); }),
            R"('::1\x00' is not a host name or IP address)");
}

TEST(ParseIpAddress, RejectsALiteralFollowedByANul) {
  using namespace std::string_literals;
  for (const auto& bad : {"::1\0"s, "[::1\0]"s, "127.0.0.1\0"s, "0.0.0.0\0.1"s}) {
    EXPECT_EQ(rejection([&bad] { parse_ip_address(bad); }),
              quote_value(bad) + " is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)");
  }
}

TEST(ParseAddress, RejectsALiteralFollowedByANul) {
  using namespace std::string_literals;
  const std::string hint = " is not an address (host:port, e.g. 127.0.0.1:8500 or [::1]:8500)";
  for (const auto& bad : {"[::1\0]:8500"s, "[::1\0x]:8500"s}) {
    EXPECT_EQ(rejection([&bad] { parse_address(bad); }), quote_value(bad) + hint);
  }
}

TEST(ParseIpAddress, AcceptsLiteralsOnly) {
  EXPECT_EQ(parse_ip_address("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(parse_ip_address("0.0.0.0"), "0.0.0.0");
  EXPECT_EQ(parse_ip_address("::"), "::");
  EXPECT_EQ(parse_ip_address("[::1]"), "::1");
  EXPECT_EQ(rejection([] { parse_ip_address("localhost"); }),
            "'localhost' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)");
}

TEST(ParseAddress, AcceptsHostPortPairs) {
  EXPECT_EQ(parse_address("127.0.0.1:8500"), (Address{"127.0.0.1", 8500}));
  EXPECT_EQ(parse_address("consul.local:80"), (Address{"consul.local", 80}));
  EXPECT_EQ(parse_address("[::1]:8500"), (Address{"::1", 8500}));
  EXPECT_EQ((Address{"::1", 8500}).to_string(), "[::1]:8500");
  EXPECT_EQ((Address{"127.0.0.1", 8500}).to_string(), "127.0.0.1:8500");
}

TEST(ParseAddress, RejectsMissingOrBadParts) {
  const std::string hint = " is not an address (host:port, e.g. 127.0.0.1:8500 or [::1]:8500)";
  EXPECT_EQ(rejection([] { parse_address("127.0.0.1"); }), "'127.0.0.1'" + hint);
  EXPECT_EQ(rejection([] { parse_address(":8500"); }), "':8500'" + hint);
  EXPECT_EQ(rejection([] { parse_address("::1:8500"); }), "'::1:8500'" + hint);
  EXPECT_EQ(rejection([] { parse_address("bad host:1"); }), "'bad host:1'" + hint);
  EXPECT_EQ(rejection([] { parse_address("h:0"); }), "'h:0' has no valid port (1-65535)");
  EXPECT_EQ(rejection([] { parse_address("h:65536"); }), "'h:65536' has no valid port (1-65535)");
  EXPECT_EQ(rejection([] { parse_address("h:"); }), "'h:' has no valid port (1-65535)");
}

}  // namespace
}  // namespace coromesh::config
