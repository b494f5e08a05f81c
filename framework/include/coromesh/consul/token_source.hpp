#pragma once

// The ACL token sent to Consul as X-Consul-Token: none, a fixed value (--consul-token,
// CONSUL_HTTP_TOKEN), or the contents of a file (--consul-token-file,
// CONSUL_HTTP_TOKEN_FILE) that is re-read when it changes, so that an operator (or a
// Vault agent) rotates the token by rewriting the file, without a restart.
//
// A change is seen by stat(2) before each call (inode, size and modification time), so
// both an in-place rewrite and an atomic rename are noticed at the next Consul call,
// blocking-query watches included (each new query reads current()). A file that cannot
// be read at run time, or holds no usable token (half written), keeps the last good
// token in force and is logged (rate-limited); it is read again at the next call.
//
// The token is a secret: no message built here contains it, only the file's path.
//
// Threads: current() and generation() may be called from any thread.

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>

namespace coromesh::consul {

// Reads and checks a token file: the whole file, surrounding whitespace trimmed (as
// Consul's own tools do), at most 4096 bytes of visible ASCII. Throws
// std::runtime_error naming the path and the problem, never the contents.
std::string read_token_file(const std::filesystem::path& path);

class TokenSource {
 public:
  // No token: requests carry no X-Consul-Token (the agent's default token applies).
  TokenSource() = default;
  // `file` non-empty: the file is read now (read_token_file's errors are thrown) and
  // followed; `fixed` is then ignored. Otherwise the fixed value, possibly empty.
  TokenSource(std::string fixed, std::filesystem::path file);

  TokenSource(const TokenSource&) = delete;
  TokenSource& operator=(const TokenSource&) = delete;

  // The token to send now ("" for none).
  std::string current();
  // +1 each time the token in force changed (0 at start): whoever registered something
  // with the old token (the agent keeps it for anti-entropy) registers again.
  std::uint64_t generation() const;
  const std::filesystem::path& file() const noexcept { return file_; }

 private:
  struct FileStamp {
    std::uintmax_t inode = 0;
    std::uintmax_t size = 0;
    std::int64_t modified_ns = 0;
    friend bool operator==(const FileStamp&, const FileStamp&) = default;
  };
  static FileStamp stamp_of(const std::filesystem::path& path);

  std::filesystem::path file_;
  mutable std::mutex mutex_;
  std::string token_;
  FileStamp stamp_;
  std::uint64_t generation_ = 0;
};

}  // namespace coromesh::consul
