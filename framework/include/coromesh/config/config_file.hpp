#pragma once

// The configuration file format, chosen over JSON because it reads like the flags it
// stands in for and needs no quoting:
//
//   # add-svc.conf — names are the flag names without "--"
//   port = 8080
//   tags = calc, v1
//   consul-token = "  value with edge spaces or a leading # is quoted  "
//
// One `name = value` per line; surrounding blanks are trimmed; a line whose first
// non-blank character is '#' is a comment (there are no trailing comments, so a value
// may contain '#'); a value wrapped in double quotes loses the quotes and nothing
// else (no escapes). Blank lines are ignored, CRLF is accepted, a name may appear
// only once unless the caller says it repeats (the option set's Spec::repeatable, e.g.
// one `upstream = ` line per upstream of the sidecar).
//
// ConfigFile only checks the syntax; the option set decides whether a name exists
// and whether its value is valid.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace coromesh::config {

class ConfigFile {
 public:
  struct Entry {
    std::string name;
    std::string value;
    std::size_t line = 0;  // 1-based, for error messages
  };

  // Files larger than this are refused: a config file is a few dozen lines, and a
  // mistaken path to a log or a binary should fail fast.
  static constexpr std::size_t kMaxBytes = 1024 * 1024;

  // Says whether a name may appear on more than one line; empty: none may.
  using Repeatable = std::function<bool(std::string_view name)>;

  // Parses `text`; `origin` names it in errors ("/etc/add.conf:3: ..."). Throws
  // ConfigError on a malformed line or a repeated name that `repeatable` does not allow.
  static ConfigFile parse(std::string_view text, std::string origin,
                          const Repeatable& repeatable = {});

  // Reads and parses `path`. `named_by` is how the path was given, for the error when
  // the file cannot be read, e.g. "--config (flag)". Throws ConfigError.
  static ConfigFile load(const std::string& path, std::string_view named_by,
                         const Repeatable& repeatable = {});

  const std::string& origin() const noexcept { return origin_; }
  const std::vector<Entry>& entries() const noexcept { return entries_; }

 private:
  std::string origin_;
  std::vector<Entry> entries_;
};

}  // namespace coromesh::config
