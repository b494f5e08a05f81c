#include "coromesh/log/logger.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <sstream>
#include <string>
#include <thread>

#include "test_env.hpp"

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

// Points fd 2 (where the logger writes) at a pipe for the test's lifetime; reading
// starts only when the test says so, so until then stderr is a sink that blocks.
class CapturedStderr {
 public:
  CapturedStderr() {
    log::flush();  // lines of earlier tests go to the real stderr
    std::array<int, 2> fds{};
    if (::pipe(fds.data()) != 0) {
      throw std::runtime_error("pipe");
    }
    read_fd_ = fds[0];
    saved_ = ::dup(STDERR_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[1]);
  }
  ~CapturedStderr() {
    if (saved_ >= 0) {
      start_reading();
      restore();
    }
    if (reader_.joinable()) {
      reader_.join();
    }
    ::close(read_fd_);
  }
  void start_reading() {
    if (reader_.joinable()) {
      return;
    }
    reader_ = std::thread([this] {
      std::array<char, 65536> chunk{};
      for (ssize_t n; (n = ::read(read_fd_, chunk.data(), chunk.size())) > 0;) {
        text_.append(chunk.data(), static_cast<std::size_t>(n));
      }
    });
  }
  // Flushes the logger, puts stderr back and returns what the logger wrote meanwhile.
  std::string finish() {
    start_reading();
    EXPECT_TRUE(log::flush(std::chrono::seconds(10)));
    restore();
    reader_.join();
    return text_;
  }

 private:
  void restore() {
    ::dup2(saved_, STDERR_FILENO);  // closes the pipe's last write end: the reader sees EOF
    ::close(saved_);
    saved_ = -1;
  }
  int read_fd_ = -1;
  int saved_ = -1;
  std::thread reader_;
  std::string text_;
};

int count_of(const std::string& text, std::string_view needle) {
  int count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

TEST(Logger, FlushDeliversEveryLineLogged) {
  CapturedStderr captured;
  captured.start_reading();
  for (int i = 0; i < 1000; ++i) {
    log::info("test.flush", {{"i", i}});
  }
  auto text = captured.finish();
  EXPECT_EQ(count_of(text, "event=test.flush i="), 1000);
  EXPECT_NE(text.find("level=info event=test.flush i=999\n"), std::string::npos);
}

TEST(Logger, LoggingNeverWaitsForABlockedStderr) {
  constexpr int kLines = 100'000;
  const auto before = log::dropped_lines();
  CapturedStderr captured;  // not read yet: stderr blocks once the pipe's 64 KiB are full
  std::atomic<bool> done{false};
  std::thread logging([&] {
    for (int i = 0; i < kLines; ++i) {
      log::warn("test.blocked", {{"i", i}, {"pad", std::string(60, 'x')}});
    }
    done = true;
  });
  // Generous: the point is that the logging thread finishes at all while nobody reads.
  EXPECT_TRUE(coromesh::testing::wait_until([&] { return done.load(); }, std::chrono::seconds(20)))
      << "log::warn blocked on a stderr nobody reads";
  captured.start_reading();
  logging.join();
  auto text = captured.finish();
  const auto dropped = log::dropped_lines().queue_full - before.queue_full;
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(static_cast<std::uint64_t>(count_of(text, "event=test.blocked i=")) + dropped,
            std::uint64_t{kLines});
}

TEST(Logger, FloodOfOneKeyIsRateLimitedAndTheNextLineSaysHowMany) {
  // Budgets are process-wide: keys of their own, should the test run again (--gtest_repeat).
  static int run = 0;
  const auto add = "op=add reason=full run=" + std::to_string(++run);
  const auto sub = "op=sub reason=full run=" + std::to_string(run);
  const auto before = log::dropped_lines();
  CapturedStderr captured;
  captured.start_reading();
  for (int i = 0; i < 1000; ++i) {
    log::warn_limited("test.flood", add, {{"i", i}});
    log::warn_limited("test.flood", sub, {{"i", i}});
  }
  // The budget is per second: the next line of the key, a second later, gets through.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  log::warn_limited("test.flood", add, {{"i", "last"}});
  auto text = captured.finish();
  const int budget = static_cast<int>(kLimitedLinesPerSecond);
  EXPECT_EQ(count_of(text, "event=test.flood"), 2 * budget + 1) << text;
  EXPECT_NE(text.find("event=test.flood i=last suppressed=" + std::to_string(1000 - budget)),
            std::string::npos)
      << text;
  EXPECT_EQ(log::dropped_lines().rate_limited - before.rate_limited,
            static_cast<std::uint64_t>(2 * (1000 - budget)));
}

}  // namespace
}  // namespace coromesh::log
