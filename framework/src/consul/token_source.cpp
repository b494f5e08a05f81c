#include "coromesh/consul/token_source.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "coromesh/log/logger.hpp"

namespace coromesh::consul {
namespace {

constexpr std::size_t kMaxTokenBytes = 4096;

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) {
    return {};
  }
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

}  // namespace

std::string read_token_file(const std::filesystem::path& path) {
  const auto fail = [&](const std::string& problem) {
    return std::runtime_error("token file " + path.string() + ": " + problem);
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw fail(std::strerror(errno));
  }
  // Twice the limit: room for surrounding whitespace, and a full buffer means too long.
  std::string contents(2 * kMaxTokenBytes, '\0');
  in.read(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (in.bad()) {
    throw fail("read error");
  }
  const bool filled = static_cast<std::size_t>(in.gcount()) == contents.size();
  contents.resize(static_cast<std::size_t>(in.gcount()));
  const auto token = trim(contents);
  if (filled || token.size() > kMaxTokenBytes) {
    throw fail("longer than " + std::to_string(kMaxTokenBytes) + " bytes");
  }
  if (token.empty()) {
    throw fail("empty");
  }
  for (const char c : token) {
    // An HTTP header value: a control character would be refused by Consul, or worse,
    // split the request. The contents are never quoted in the message.
    if (c < 0x21 || c > 0x7e) {
      throw fail("holds a character that cannot be a token (only visible ASCII)");
    }
  }
  return std::string(token);
}

TokenSource::TokenSource(std::string fixed, std::filesystem::path file) : file_(std::move(file)) {
  if (file_.empty()) {
    token_ = std::move(fixed);
    return;
  }
  stamp_ = stamp_of(file_);
  token_ = read_token_file(file_);
}

TokenSource::FileStamp TokenSource::stamp_of(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return {};
  }
  return {.inode = static_cast<std::uintmax_t>(info.st_ino),
          .size = static_cast<std::uintmax_t>(info.st_size),
          .modified_ns = static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 +
                         static_cast<std::int64_t>(info.st_mtim.tv_nsec)};
}

std::string TokenSource::current() {
  const std::lock_guard lock(mutex_);
  if (file_.empty()) {
    return token_;
  }
  const auto now = stamp_of(file_);
  if (now == stamp_ && now.inode != 0) {
    return token_;
  }
  try {
    auto fresh = read_token_file(file_);
    stamp_ = now;
    if (fresh != token_) {
      token_ = std::move(fresh);
      ++generation_;
      log::info("consul.token_file.changed",
                {{"file", file_.string()}, {"generation", generation_}});
    }
  } catch (const std::exception& e) {
    // Mid-rewrite, or removed for a moment: the last good token stays in force.
    log::warn_limited("consul.token_file.unusable", file_.string(),
                      {{"error", e.what()}, {"using", "the last token read"}});
  }
  return token_;
}

std::uint64_t TokenSource::generation() const {
  const std::lock_guard lock(mutex_);
  return generation_;
}

}  // namespace coromesh::consul
