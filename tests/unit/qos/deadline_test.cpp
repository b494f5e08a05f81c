#include "coromesh/qos/deadline.hpp"

#include <gtest/gtest.h>

#include <string>

namespace coromesh::qos {
namespace {

using namespace std::chrono_literals;

TEST(Deadline, NoneNeverExpires) {
  ManualClock clock;
  const Deadline d;
  EXPECT_FALSE(d.is_set());
  EXPECT_FALSE(d.expired(clock));
  EXPECT_EQ(d.remaining(clock), Duration::max());
  EXPECT_TRUE(d.can_finish(1h, clock));
}

TEST(Deadline, RemainingShrinksWithTime) {
  ManualClock clock;
  const auto d = Deadline::after(100ms, clock);
  EXPECT_EQ(d.remaining(clock), 100ms);
  clock.advance(30ms);
  EXPECT_EQ(d.remaining(clock), 70ms);
  EXPECT_TRUE(d.can_finish(70ms, clock));
  EXPECT_FALSE(d.can_finish(71ms, clock));
  clock.advance(70ms);
  EXPECT_TRUE(d.expired(clock));
  EXPECT_EQ(d.remaining(clock), Duration::zero());
  EXPECT_FALSE(d.can_finish(Duration::zero(), clock));
  EXPECT_EQ(d.header_value(clock), "0");
}

TEST(Deadline, ShortenedKeepsTheEarlier) {
  ManualClock clock;
  const auto d = Deadline::after(100ms, clock);
  EXPECT_EQ(d.shortened(50ms, clock).remaining(clock), 50ms);
  EXPECT_EQ(d.shortened(500ms, clock), d);
  EXPECT_EQ(Deadline().shortened(5ms, clock).remaining(clock), 5ms);
  EXPECT_EQ(Deadline::after(Duration::max(), clock).when(), Clock::time_point::max());
  EXPECT_TRUE(Deadline::after(Duration::min(), clock).expired(clock));
  EXPECT_TRUE(Deadline::after(-5ms, clock).expired(clock));
}

TEST(Deadline, PropagatesAcrossTwoHopsWithSkewedClocks) {
  ManualClock a;  // the caller's clock
  ManualClock b;  // the callee's, far off: only remaining time crosses the wire
  b.advance(1000h);
  const auto at_a = Deadline::after(250ms, a);
  a.advance(40ms);  // work in hop A before it calls B
  const auto header = at_a.header_value(a);
  EXPECT_EQ(header, "210");
  auto parsed = parse_deadline_header(header, b);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_EQ(parsed.deadline.remaining(b), 210ms);
  b.advance(200ms);  // B spends most of it; the next hop sees what is left
  EXPECT_EQ(parsed.deadline.header_value(b), "10");
  EXPECT_FALSE(parsed.deadline.can_finish(20ms, b));  // B refuses 20 ms of work
}

TEST(Deadline, HeaderRoundsDown) {
  ManualClock clock;
  EXPECT_EQ(Deadline::after(1999us, clock).header_value(clock), "1");
}

TEST(Deadline, ParsesValidHeaders) {
  ManualClock clock;
  for (auto [text, ms] : {std::pair{"0", 0}, std::pair{"  42\t", 42}, std::pair{"007", 7},
                          std::pair{"86400000", 86'400'000}}) {
    auto parsed = parse_deadline_header(text, clock);
    ASSERT_TRUE(parsed) << text << ": " << parsed.error;
    EXPECT_EQ(parsed.deadline.remaining(clock), std::chrono::milliseconds(ms)) << text;
  }
}

TEST(Deadline, HostileHeadersAreClearErrors) {
  ManualClock clock;
  const std::string nul("12\0 3", 5);
  for (std::string_view text :
       {std::string_view(""), std::string_view("   "), std::string_view("-1"),
        std::string_view("-0"), std::string_view("+5"), std::string_view("1.5"),
        std::string_view("1e3"), std::string_view("abc"), std::string_view("12ms"),
        std::string_view("0x10"), std::string_view("86400001"),
        std::string_view("99999999999999999999999999999999"),
        std::string_view("18446744073709551616"), std::string_view("1 2"), std::string_view(nul)}) {
    auto parsed = parse_deadline_header(text, clock);
    EXPECT_FALSE(parsed) << "accepted '" << text << "'";
    EXPECT_FALSE(parsed.error.empty());
    EXPECT_FALSE(parsed.deadline.is_set());
  }
  EXPECT_EQ(parse_deadline_header("-5", clock).error, "deadline header is negative");
  EXPECT_EQ(parse_deadline_header("zz", clock).error,
            "deadline header is not a whole number of milliseconds");
  EXPECT_EQ(parse_deadline_header("123456789012", clock).error,
            "deadline header exceeds the maximum budget of 24h");
}

}  // namespace
}  // namespace coromesh::qos
