#include "coromesh/config/config_file.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "coromesh/config/error.hpp"
#include "error_text.hpp"
#include "test_env.hpp"

namespace coromesh::config {
namespace {

using testing::config_error;

TEST(ConfigFile, ParsesNameValueLinesCommentsAndQuotes) {
  auto file = ConfigFile::parse(
      "# a comment\n"
      "\n"
      "port = 8080\r\n"
      "  tags=a,b  \n"
      "   # indented comment\n"
      "name = x#not-a-comment\n"
      "consul-token = \"  spaced  \"\n"
      "empty =\n",
      "svc.conf");
  EXPECT_EQ(file.origin(), "svc.conf");
  const auto& entries = file.entries();
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[0].name, "port");
  EXPECT_EQ(entries[0].value, "8080");
  EXPECT_EQ(entries[0].line, 3u);
  EXPECT_EQ(entries[1].name, "tags");
  EXPECT_EQ(entries[1].value, "a,b");
  EXPECT_EQ(entries[2].value, "x#not-a-comment");
  EXPECT_EQ(entries[3].value, "  spaced  ");
  EXPECT_EQ(entries[4].value, "");
  EXPECT_EQ(entries[4].line, 8u);
}

TEST(ConfigFile, ABadLineNamesFileAndLineNumber) {
  EXPECT_EQ(config_error([] { ConfigFile::parse("port = 1\n\nport 8080\n", "svc.conf"); }),
            "config error: svc.conf:3: expected 'name = value', got 'port 8080'");
  EXPECT_EQ(config_error([] { ConfigFile::parse("= 5\n", "svc.conf"); }),
            "config error: svc.conf:1: expected 'name = value', got '= 5'");
  EXPECT_EQ(config_error([] { ConfigFile::parse("Po rt = 5\n", "svc.conf"); }),
            "config error: svc.conf:1: expected 'name = value', got 'Po rt = 5'");
}

TEST(ConfigFile, ARepeatedNameIsAnError) {
  EXPECT_EQ(config_error([] { ConfigFile::parse("port = 1\n# x\nport = 2\n", "svc.conf"); }),
            "config error: svc.conf:3: 'port' is already set on line 1");
}

TEST(ConfigFile, HostileBytesStayOnOneLineOfError) {
  const auto message =
      config_error([] { ConfigFile::parse(std::string("\x01\x00garbage\n", 10), "svc.conf"); });
  EXPECT_EQ(message, R"(config error: svc.conf:1: expected 'name = value', got '\x01\x00garbage')");
}

TEST(ConfigFile, LoadReadsAFileAndReportsUnreadableOnes) {
  coromesh::testing::TempDir dir("config");
  const auto path = (dir.path() / "svc.conf").string();
  std::ofstream(path) << "port = 9000\n";
  auto file = ConfigFile::load(path, "--config (flag)");
  ASSERT_EQ(file.entries().size(), 1u);
  EXPECT_EQ(file.origin(), path);

  const auto missing = (dir.path() / "missing.conf").string();
  EXPECT_EQ(
      config_error([&] { ConfigFile::load(missing, "--config (flag)"); }),
      "config error: --config (flag): cannot read '" + missing + "': No such file or directory");
  EXPECT_NE(config_error([&] { ConfigFile::load(dir.path().string(), "--config (flag)"); }),
            "<no error>")
      << "a directory is not a config file";
}

TEST(ConfigFile, LoadRefusesHugeFiles) {
  coromesh::testing::TempDir dir("config");
  const auto path = (dir.path() / "huge.conf").string();
  std::ofstream(path) << std::string(ConfigFile::kMaxBytes + 1, '#');
  EXPECT_EQ(config_error([&] { ConfigFile::load(path, "COROMESH_CONFIG (environment)"); }),
            "config error: COROMESH_CONFIG (environment): cannot read '" + path +
                "': it is larger than 1MiB");
}

}  // namespace
}  // namespace coromesh::config
