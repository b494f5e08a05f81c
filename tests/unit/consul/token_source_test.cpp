#include "coromesh/consul/token_source.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

namespace coromesh::consul {
namespace {

namespace fs = std::filesystem;

class TokenFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("coromesh-token-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = dir_ / "token";
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& contents, const fs::path& where) {
    std::ofstream(where, std::ios::binary | std::ios::trunc) << contents;
  }
  void write(const std::string& contents) { write(contents, path_); }
  // A rotation the way a secret agent does it: a new file renamed over the old one.
  void replace(const std::string& contents) {
    write(contents, dir_ / "next");
    fs::rename(dir_ / "next", path_);
  }
  std::string error_of(const std::string& contents) {
    write(contents);
    try {
      read_token_file(path_);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "no error";
  }

  fs::path dir_, path_;
};

TEST(TokenSourceFixed, IsTheGivenValueOrNothing) {
  TokenSource none;
  EXPECT_EQ(none.current(), "");
  TokenSource fixed("s3cret", {});
  EXPECT_EQ(fixed.current(), "s3cret");
  EXPECT_EQ(fixed.generation(), 0u);
}

TEST_F(TokenFile, IsReadTrimmedAndTakesPrecedenceOverAFixedValue) {
  write("  9a1e-secret\n");
  TokenSource source("ignored", path_);
  EXPECT_EQ(source.current(), "9a1e-secret");
  EXPECT_EQ(source.generation(), 0u);
}

TEST_F(TokenFile, IsReadAgainWhenRewrittenInPlaceOrReplaced) {
  write("first");
  TokenSource source({}, path_);
  ASSERT_EQ(source.current(), "first");
  write("second-token");  // in place, another size
  EXPECT_EQ(source.current(), "second-token");
  EXPECT_EQ(source.generation(), 1u);
  replace("third-token!");  // renamed over it, same size as before
  EXPECT_EQ(source.current(), "third-token!");
  EXPECT_EQ(source.generation(), 2u);
  replace("third-token!");  // a new file with the same token is no new credential
  EXPECT_EQ(source.current(), "third-token!");
  EXPECT_EQ(source.generation(), 2u);
}

TEST_F(TokenFile, AnUnusableFileAtRunTimeKeepsTheLastToken) {
  write("good-token");
  TokenSource source({}, path_);
  write("");  // truncated mid-rewrite
  EXPECT_EQ(source.current(), "good-token");
  fs::remove(path_);  // removed for a moment
  EXPECT_EQ(source.current(), "good-token");
  EXPECT_EQ(source.generation(), 0u);
  write("next-token");
  EXPECT_EQ(source.current(), "next-token");
  EXPECT_EQ(source.generation(), 1u);
}

TEST_F(TokenFile, AMissingFileAtStartUpThrowsNamingThePath) {
  try {
    TokenSource source({}, path_);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "token file " + path_.string() + ": No such file or directory");
  }
}

TEST_F(TokenFile, BadContentsAreRefusedWithoutQuotingThem) {
  EXPECT_EQ(error_of(" \n\t"), "token file " + path_.string() + ": empty");
  const auto control = error_of("abc\x01secret-part");
  EXPECT_NE(control.find("only visible ASCII"), std::string::npos) << control;
  EXPECT_EQ(control.find("secret-part"), std::string::npos) << control;
  const auto header_split = error_of("tok\r\nX-Injected: 1");
  EXPECT_NE(header_split.find("only visible ASCII"), std::string::npos) << header_split;
  EXPECT_NE(error_of(std::string(5000, 'a')).find("longer than 4096 bytes"), std::string::npos);
  EXPECT_EQ(error_of(std::string(4096, 'a') + "\n"), "no error");
}

}  // namespace
}  // namespace coromesh::consul
