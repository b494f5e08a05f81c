#include "json_duplicate_keys.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <unordered_set>
#include <vector>

namespace coromesh::http::binding_detail {
namespace {

namespace json = boost::json;
using boost::system::error_code;

// A boost::json::basic_parser handler that builds nothing: it keeps the keys of each
// open object and stops at the first one seen twice, naming where it is.
class DuplicateKeyFinder {
 public:
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

  std::optional<std::string> duplicate;  // its path, once found

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_array_begin(error_code&) {
    value_begins();
    open_.push_back(Container{.is_object = false});
    return true;
  }
  bool on_array_end(std::size_t, error_code&) {
    open_.pop_back();
    return true;
  }
  bool on_object_begin(error_code&) {
    value_begins();
    open_.push_back(Container{.is_object = true});
    return true;
  }
  bool on_object_end(std::size_t, error_code&) {
    open_.pop_back();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, error_code&) { return value_begins(); }
  bool on_key_part(json::string_view part, std::size_t, error_code&) {
    key_.append(part.data(), part.size());
    return true;
  }
  bool on_key(json::string_view last_part, std::size_t, error_code& ec) {
    key_.append(last_part.data(), last_part.size());
    auto& object = open_.back();
    if (!object.keys.insert(key_).second) {
      duplicate = path_to(key_);
      ec = json::error::syntax;  // stops the parser; `duplicate` says why
      return false;
    }
    object.key = std::move(key_);
    key_.clear();
    return true;
  }
  bool on_number_part(json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, error_code&) { return value_begins(); }
  bool on_uint64(std::uint64_t, json::string_view, error_code&) { return value_begins(); }
  bool on_double(double, json::string_view, error_code&) { return value_begins(); }
  bool on_bool(bool, error_code&) { return value_begins(); }
  bool on_null(error_code&) { return value_begins(); }
  bool on_comment_part(json::string_view, error_code&) { return true; }
  bool on_comment(json::string_view, error_code&) { return true; }

 private:
  struct Container {
    bool is_object;
    std::size_t next_index = 0;                 // arrays: of the next element
    std::string key;                            // objects: of the member being read
    std::unordered_set<std::string> keys = {};  // objects: every key so far
  };

  // Counts an element of the array being read (binding paths index them).
  bool value_begins() {
    if (!open_.empty() && !open_.back().is_object) {
      ++open_.back().next_index;
    }
    return true;
  }

  // The path binding errors use: "a.b[2].c", here ending in `key` of the innermost object.
  std::string path_to(const std::string& key) const {
    std::string path;
    for (std::size_t i = 0; i + 1 < open_.size(); ++i) {
      const auto& container = open_[i];
      if (container.is_object) {
        path += (path.empty() ? "" : ".") + container.key;
      } else {
        path += "[" + std::to_string(container.next_index - 1) + "]";
      }
    }
    return path + (path.empty() ? "" : ".") + key;
  }

  std::vector<Container> open_;
  std::string key_;  // the parts of a key split across buffers
};

}  // namespace

std::optional<std::string> find_duplicate_key(std::string_view json) {
  json::parse_options options;
  options.max_depth = 64;  // the caller's parse, with its own smaller limit, came first
  json::basic_parser<DuplicateKeyFinder> parser(options);
  error_code ec;
  parser.write_some(false, json.data(), json.size(), ec);
  return std::move(parser.handler().duplicate);
}

}  // namespace coromesh::http::binding_detail
