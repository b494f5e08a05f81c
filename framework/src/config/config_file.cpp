#include "coromesh/config/config_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "coromesh/config/error.hpp"

namespace coromesh::config {
namespace {

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) {
    return {};
  }
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

bool is_name(std::string_view name) {
  return !name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") ==
                              std::string_view::npos;
}

}  // namespace

ConfigFile ConfigFile::parse(std::string_view text, std::string origin,
                             const Repeatable& repeatable) {
  ConfigFile file;
  file.origin_ = std::move(origin);
  std::size_t number = 0;
  while (!text.empty()) {
    ++number;
    const auto newline = text.find('\n');
    auto line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    line = trim(line);
    if (line.empty() || line.front() == '#') {
      continue;
    }
    const auto where = file.origin_ + ":" + std::to_string(number) + ": ";
    const auto equals = line.find('=');
    const auto name = trim(line.substr(0, equals));
    if (equals == std::string_view::npos || !is_name(name)) {
      throw ConfigError(where + "expected 'name = value', got " + quote_value(line));
    }
    auto value = trim(line.substr(equals + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    const bool may_repeat = repeatable && repeatable(name);
    for (const auto& earlier : file.entries_) {
      if (!may_repeat && earlier.name == name) {
        throw ConfigError(where + "'" + std::string(name) + "' is already set on line " +
                          std::to_string(earlier.line));
      }
    }
    file.entries_.push_back(Entry{std::string(name), std::string(value), number});
  }
  return file;
}

ConfigFile ConfigFile::load(const std::string& path, std::string_view named_by,
                            const Repeatable& repeatable) {
  const auto fail = [&](const std::string& why) {
    return ConfigError(std::string(named_by) + ": cannot read " + quote_value(path) + ": " + why);
  };
  if (path.find('\0') != std::string::npos) {
    throw fail("the path contains a NUL byte");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw fail(std::strerror(errno));
  }
  std::string text;
  text.resize(kMaxBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    throw fail(std::strerror(errno));
  }
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxBytes) {
    throw fail("it is larger than 1MiB");
  }
  return parse(text, path, repeatable);
}

}  // namespace coromesh::config
