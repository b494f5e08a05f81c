#include "coromesh/config/values.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "error_text.hpp"

namespace coromesh::config {
namespace {

using namespace std::chrono_literals;

using testing::rejection;

TEST(ParseBool, AcceptsTheUsualSpellingsInAnyCase) {
  for (const char* yes : {"true", "TRUE", "1", "yes", "On"}) {
    EXPECT_TRUE(parse_bool(yes)) << yes;
  }
  for (const char* no : {"false", "False", "0", "no", "OFF"}) {
    EXPECT_FALSE(parse_bool(no)) << no;
  }
  EXPECT_EQ(rejection([] { parse_bool("maybe"); }),
            "'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)");
  EXPECT_EQ(rejection([] { parse_bool(""); }).substr(0, 20), "'' is not a boolean ");
}

TEST(ParseInteger, AcceptsSignedDecimalsInRange) {
  EXPECT_EQ(parse_integer("42", 0, 100), 42);
  EXPECT_EQ(parse_integer("+7", 0, 100), 7);
  EXPECT_EQ(parse_integer("-3", -5, 5), -3);
  EXPECT_EQ(parse_integer("256", 1, 256), 256);
}

TEST(ParseInteger, RejectsNonNumbersAndOutOfRange) {
  EXPECT_EQ(rejection([] { parse_integer("abc", 1, 256); }), "'abc' is not an integer");
  EXPECT_EQ(rejection([] { parse_integer("", 1, 256); }), "'' is not an integer");
  EXPECT_EQ(rejection([] { parse_integer("12x", 1, 256); }), "'12x' is not an integer");
  EXPECT_EQ(rejection([] { parse_integer(" 12", 1, 256); }), "' 12' is not an integer");
  EXPECT_EQ(rejection([] { parse_integer("1.5", 1, 256); }), "'1.5' is not an integer");
  EXPECT_EQ(rejection([] { parse_integer("+-1", -5, 5); }), "'+-1' is not an integer");
  EXPECT_EQ(rejection([] { parse_integer("0", 1, 256); }), "'0' is out of range 1..256");
  EXPECT_EQ(rejection([] { parse_integer("257", 1, 256); }), "'257' is out of range 1..256");
  EXPECT_EQ(rejection([] { parse_integer("99999999999999999999999", 1, 256); }),
            "'99999999999999999999999' is out of range 1..256");
}

TEST(ParsePort, AcceptsZeroToMax) {
  EXPECT_EQ(parse_port("0"), 0);
  EXPECT_EQ(parse_port("8080"), 8080);
  EXPECT_EQ(parse_port("65535"), 65535);
  for (const char* bad : {"abc", "65536", "-1", "", "80 ", "1e3"}) {
    EXPECT_EQ(rejection([bad] { parse_port(bad); }),
              "'" + std::string(bad) + "' is not a port number (0-65535)");
  }
}

TEST(ParseDuration, AcceptsGoStyleDurations) {
  EXPECT_EQ(parse_duration("250ms"), 250ms);
  EXPECT_EQ(parse_duration("5s"), 5s);
  EXPECT_EQ(parse_duration("1m"), 1min);
  EXPECT_EQ(parse_duration("2h"), 2h);
  EXPECT_EQ(parse_duration("1m30s"), 90s);
  EXPECT_EQ(parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_duration(".5s"), 500ms);
  EXPECT_EQ(parse_duration("10us"), 10us);
  EXPECT_EQ(parse_duration("7ns"), 7ns);
  EXPECT_EQ(parse_duration("0"), 0ns);
  EXPECT_EQ(parse_duration("0s"), 0ns);
}

TEST(ParseDuration, RejectsMissingUnitsGarbageAndOverflow) {
  EXPECT_EQ(rejection([] { parse_duration("250"); }), "'250' has no unit (use e.g. 250ms, 5s, 1m)");
  EXPECT_EQ(rejection([] { parse_duration("5 s"); }),
            "'5 s' is not a duration (units are ns, us, ms, s, m, h)");
  EXPECT_EQ(rejection([] { parse_duration("5min"); }),
            "'5min' is not a duration (units are ns, us, ms, s, m, h)");
  EXPECT_EQ(rejection([] { parse_duration("-5s"); }),
            "'-5s' is not a duration (use e.g. 250ms, 5s, 1m30s)");
  EXPECT_EQ(rejection([] { parse_duration("s"); }),
            "'s' is not a duration (use e.g. 250ms, 5s, 1m30s)");
  EXPECT_EQ(rejection([] { parse_duration("1.2.3s"); }),
            "'1.2.3s' is not a duration (use e.g. 250ms, 5s, 1m30s)");
  EXPECT_EQ(rejection([] { parse_duration(""); }),
            "'' is not a duration (empty; use e.g. 250ms, 5s, 1m)");
  EXPECT_EQ(rejection([] { parse_duration("9999999999h"); }),
            "'9999999999h' is not a duration (too long)");
  EXPECT_EQ(rejection([] { parse_duration("2562047.9999h"); }),
            "'2562047.9999h' is not a duration (too long)");
  EXPECT_EQ(rejection([] { parse_duration("9223372036854775807ns1ns"); }),
            "'9223372036854775807ns1ns' is not a duration (too long)");
  EXPECT_EQ(parse_duration("9223372036854775807ns"), std::chrono::nanoseconds::max());
  EXPECT_EQ(rejection([] { parse_duration("2562047h2562047h"); }),
            "'2562047h2562047h' is not a duration (too long)");
}

TEST(ParseSize, AcceptsBytesAndBinaryAndDecimalUnits) {
  EXPECT_EQ(parse_size("8192"), 8192u);
  EXPECT_EQ(parse_size("100B"), 100u);
  EXPECT_EQ(parse_size("64KiB"), 64u * 1024);
  EXPECT_EQ(parse_size("1MiB"), 1024u * 1024);
  EXPECT_EQ(parse_size("1mib"), 1024u * 1024);
  EXPECT_EQ(parse_size("2GiB"), 2ULL << 30);
  EXPECT_EQ(parse_size("1TiB"), 1ULL << 40);
  EXPECT_EQ(parse_size("10kB"), 10'000u);
  EXPECT_EQ(parse_size("10MB"), 10'000'000u);
  EXPECT_EQ(parse_size("1GB"), 1'000'000'000u);
}

TEST(ParseSize, RejectsUnknownUnitsAndOverflow) {
  const std::string hint = " is not a size (use e.g. 8192, 64KiB, 1MiB, 10MB)";
  EXPECT_EQ(rejection([] { parse_size("64K"); }), "'64K'" + hint);
  EXPECT_EQ(rejection([] { parse_size("KiB"); }), "'KiB'" + hint);
  EXPECT_EQ(rejection([] { parse_size("1.5MiB"); }), "'1.5MiB'" + hint);
  EXPECT_EQ(rejection([] { parse_size("-1"); }), "'-1'" + hint);
  EXPECT_EQ(rejection([] { parse_size(""); }), "''" + hint);
  EXPECT_EQ(rejection([] { parse_size("99999999999TiB"); }),
            "'99999999999TiB' is too large a size");
  EXPECT_EQ(rejection([] { parse_size("99999999999999999999999"); }),
            "'99999999999999999999999'" + hint);
}

TEST(ParseList, SplitsOnCommasAndTrims) {
  EXPECT_EQ(parse_list("a, b ,c"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(parse_list("one"), (std::vector<std::string>{"one"}));
  EXPECT_EQ(parse_list(",, ,"), (std::vector<std::string>{}));
  EXPECT_EQ(parse_list(""), (std::vector<std::string>{}));
}

TEST(FormatDuration, PrintsTheShortestExactSpelling) {
  EXPECT_EQ(format_duration(10s), "10s");
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(90s), "1m30s");
  EXPECT_EQ(format_duration(1h), "1h");
  EXPECT_EQ(format_duration(1500ms), "1s500ms");
  EXPECT_EQ(format_duration(0s), "0s");
  EXPECT_EQ(format_duration(1001ns), "1001ns");
  for (std::chrono::nanoseconds d :
       std::initializer_list<std::chrono::nanoseconds>{10s, 250ms, 90s, 1h}) {
    EXPECT_EQ(parse_duration(format_duration(d)), d) << "round trip of " << format_duration(d);
  }
}

TEST(FormatSize, PrintsTheLargestExactBinaryUnit) {
  EXPECT_EQ(format_size(8 * 1024), "8KiB");
  EXPECT_EQ(format_size(1024 * 1024), "1MiB");
  EXPECT_EQ(format_size(1000), "1000B");
  EXPECT_EQ(format_size(0), "0B");
  EXPECT_EQ(parse_size(format_size(3ULL << 30)), 3ULL << 30);
}

TEST(QuoteValue, EscapesControlCharactersAndTruncates) {
  EXPECT_EQ(quote_value("abc"), "'abc'");
  EXPECT_EQ(quote_value(std::string("a\nb\0c\t\x7f", 7)), R"('a\nb\x00c\t\x7f')");
  const auto quoted = quote_value(std::string(10'000, 'x'));
  EXPECT_EQ(quoted, "'" + std::string(80, 'x') + "'... (10000 bytes)");
  // A cut never splits a UTF-8 sequence: 79 ASCII bytes, then a 2-byte "é" across 80.
  const auto utf8 = quote_value(std::string(79, 'a') + "\xc3\xa9" + std::string(10, 'b'));
  EXPECT_EQ(utf8, "'" + std::string(79, 'a') + "'... (91 bytes)");
}

}  // namespace
}  // namespace coromesh::config
