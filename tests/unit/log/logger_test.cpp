#include "coromesh/log/logger.hpp"

#include <gtest/gtest.h>

namespace coromesh::log {
namespace {

TEST(Logger, FormatsOneKeyValueLine) {
  auto line = format_line(Level::info, "http.listen", {{"port", 8080}, {"address", "127.0.0.1"}});
  EXPECT_NE(line.find("level=info event=http.listen port=8080 address=127.0.0.1"),
            std::string::npos)
      << line;
  EXPECT_EQ(line.rfind("ts=", 0), 0u) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(Logger, QuotesAndEscapesHostileValues) {
  // A value from the network must not be able to forge fields or a second line.
  auto line = format_line(Level::warn, "http.bad_request",
                          {{"path", "/x level=error\nfake=1"}, {"empty", ""}});
  EXPECT_NE(line.find(R"(path="/x level=error\nfake=1")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"(empty="")"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(Logger, RendersBooleansDoublesAndDurations) {
  auto line = format_line(Level::debug, "e",
                          {{"ok", true}, {"ratio", 0.5}, {"took", std::chrono::milliseconds(250)}});
  EXPECT_NE(line.find("ok=true ratio=0.5 took=0.25"), std::string::npos) << line;
}

TEST(Logger, ParsesLevelsAndRejectsUnknownOnes) {
  Level level = Level::info;
  EXPECT_TRUE(parse_level("debug", level));
  EXPECT_EQ(level, Level::debug);
  EXPECT_TRUE(parse_level("off", level));
  EXPECT_EQ(level, Level::off);
  EXPECT_FALSE(parse_level("verbose", level));
  EXPECT_EQ(level, Level::off) << "a rejected value must leave the output untouched";
}

TEST(Logger, LevelThresholdFiltersEvents) {
  set_level(Level::warn);
  EXPECT_FALSE(enabled(Level::info));
  EXPECT_TRUE(enabled(Level::warn));
  EXPECT_TRUE(enabled(Level::error));
  set_level(Level::off);
  EXPECT_FALSE(enabled(Level::error));
  set_level(Level::info);
}

}  // namespace
}  // namespace coromesh::log
