#include "coromesh/log/async_line_writer.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace coromesh::log {
namespace {

// A pipe whose read end a thread drains into a string once started.
class Pipe {
 public:
  Pipe() {
    std::array<int, 2> fds{};
    if (::pipe(fds.data()) != 0) {
      throw std::runtime_error("pipe");
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
  }
  ~Pipe() {
    close_write_end();
    if (reader_.joinable()) {
      reader_.join();
    }
    ::close(read_fd_);
  }
  int write_fd() const { return write_fd_; }
  void start_reading() {
    reader_ = std::thread([this] {
      std::array<char, 65536> chunk{};
      for (;;) {
        auto n = ::read(read_fd_, chunk.data(), chunk.size());
        if (n <= 0) {
          return;
        }
        text_.append(chunk.data(), static_cast<std::size_t>(n));
      }
    });
  }
  // Everything written, once the write end is closed and the reader is done.
  std::string finish() {
    close_write_end();
    reader_.join();
    return text_;
  }

 private:
  void close_write_end() {
    if (write_fd_ >= 0) {
      ::close(write_fd_);
      write_fd_ = -1;
    }
  }
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::thread reader_;
  std::string text_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

TEST(AsyncLineWriter, ConcurrentLinesBelowTheBoundAllArriveWhole) {
  constexpr int kThreads = 8;
  constexpr int kLinesEach = 2000;
  Pipe pipe;
  pipe.start_reading();
  {
    AsyncLineWriter writer(pipe.write_fd(), {.capacity_bytes = 16 * 1024 * 1024});
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&writer, t] {
        for (int i = 0; i < kLinesEach; ++i) {
          EXPECT_TRUE(writer.submit("line t=" + std::to_string(t) + " i=" + std::to_string(i) +
                                    " pad=" + std::string(40, 'x')));
        }
      });
    }
    for (auto& thread : threads) {
      thread.join();
    }
    EXPECT_TRUE(writer.flush(std::chrono::seconds(10)));
    EXPECT_EQ(writer.dropped(), 0u);
  }
  auto lines = lines_of(pipe.finish());
  std::set<std::string> distinct(lines.begin(), lines.end());
  EXPECT_EQ(lines.size(), std::size_t{kThreads * kLinesEach});
  EXPECT_EQ(distinct.size(), lines.size()) << "a line arrived twice";
  for (int t = 0; t < kThreads; ++t) {
    for (int i : {0, kLinesEach / 2, kLinesEach - 1}) {
      auto expected = "line t=" + std::to_string(t) + " i=" + std::to_string(i) +
                      " pad=" + std::string(40, 'x');
      EXPECT_EQ(distinct.count(expected), 1u) << expected << " missing or torn";
    }
  }
}

TEST(AsyncLineWriter, CallerNeverWaitsForABlockedSinkAndDropsAreCounted) {
  constexpr int kLines = 100'000;
  Pipe pipe;  // nobody reads yet: once its 64 KiB are full, every write(2) blocks
  AsyncLineWriter writer(pipe.write_fd(), {.capacity_bytes = 1024 * 1024});
  int accepted = 0;
  for (int i = 0; i < kLines; ++i) {
    accepted += writer.submit("line i=" + std::to_string(i) + " " + std::string(80, 'x')) ? 1 : 0;
  }
  // Reaching this point with the reader never started is the point of the test.
  EXPECT_EQ(writer.dropped(), static_cast<std::uint64_t>(kLines - accepted));
  EXPECT_GT(writer.dropped(), 0u);
  EXPECT_FALSE(writer.flush(std::chrono::milliseconds(50))) << "the sink is still blocked";

  pipe.start_reading();
  EXPECT_TRUE(writer.flush(std::chrono::seconds(10)));
  writer.submit("after");  // the drop report goes out with the next batch at the latest
  EXPECT_TRUE(writer.flush(std::chrono::seconds(10)));
  auto lines = lines_of(pipe.finish());
  int delivered = 0;
  std::uint64_t reported_dropped = 0;
  for (const auto& line : lines) {
    if (line.rfind("line i=", 0) == 0) {
      ++delivered;
    } else if (auto at = line.find("event=log.lines_dropped"); at != std::string::npos) {
      EXPECT_NE(line.find("reason=queue_full"), std::string::npos) << line;
      reported_dropped += std::stoull(line.substr(line.find("lines=") + 6));
    }
  }
  EXPECT_EQ(delivered, accepted);
  EXPECT_EQ(reported_dropped, writer.dropped());
}

TEST(AsyncLineWriter, DestructionWritesEverythingQueued) {
  Pipe pipe;
  pipe.start_reading();
  {
    AsyncLineWriter writer(pipe.write_fd(), {.interval = std::chrono::seconds(60)});
    for (int i = 0; i < 100; ++i) {
      writer.submit("line " + std::to_string(i));
    }
  }
  auto lines = lines_of(pipe.finish());
  ASSERT_EQ(lines.size(), 100u);
  EXPECT_EQ(lines.back(), "line 99");
}

}  // namespace
}  // namespace coromesh::log
