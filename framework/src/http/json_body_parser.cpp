#include "json_body_parser.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value_stack.hpp>
#include <unordered_set>
#include <vector>

namespace coromesh::http::binding_detail {
namespace {

namespace json = boost::json;
using boost::system::error_code;

// A boost::json::basic_parser handler that builds the value on a value_stack, as
// boost::json::parser's own does, and keeps the keys of each open object: it stops at the
// first one seen twice, naming where it is.
class StrictValueBuilder {
 public:
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

  std::optional<std::string> duplicate;  // its path, once found

  StrictValueBuilder() { stack_.reset(); }

  json::value release() { return stack_.release(); }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_array_begin(error_code&) {
    value_begins();
    open_.push_back(Container{.is_object = false});
    return true;
  }
  bool on_array_end(std::size_t size, error_code&) {
    stack_.push_array(size);
    open_.pop_back();
    return true;
  }
  bool on_object_begin(error_code&) {
    value_begins();
    open_.push_back(Container{.is_object = true});
    return true;
  }
  bool on_object_end(std::size_t size, error_code&) {
    stack_.push_object(size);
    open_.pop_back();
    return true;
  }
  bool on_string_part(json::string_view part, std::size_t, error_code&) {
    stack_.push_chars(part);
    return true;
  }
  bool on_string(json::string_view last_part, std::size_t, error_code&) {
    stack_.push_string(last_part);
    return value_begins();
  }
  bool on_key_part(json::string_view part, std::size_t, error_code&) {
    stack_.push_chars(part);
    key_.append(part.data(), part.size());
    return true;
  }
  bool on_key(json::string_view last_part, std::size_t, error_code& ec) {
    stack_.push_key(last_part);
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
  bool on_int64(std::int64_t number, json::string_view, error_code&) {
    stack_.push_int64(number);
    return value_begins();
  }
  bool on_uint64(std::uint64_t number, json::string_view, error_code&) {
    stack_.push_uint64(number);
    return value_begins();
  }
  bool on_double(double number, json::string_view, error_code&) {
    stack_.push_double(number);
    return value_begins();
  }
  bool on_bool(bool flag, error_code&) {
    stack_.push_bool(flag);
    return value_begins();
  }
  bool on_null(error_code&) {
    stack_.push_null();
    return value_begins();
  }
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

  json::value_stack stack_;
  std::vector<Container> open_;
  std::string key_;  // the parts of a key split across buffers
};

}  // namespace

ParsedJsonBody parse_json_refusing_duplicate_keys(std::string_view body, std::size_t max_depth) {
  json::parse_options options;
  options.max_depth = max_depth;
  json::basic_parser<StrictValueBuilder> parser(options);
  ParsedJsonBody parsed;
  const auto consumed = parser.write_some(false, body.data(), body.size(), parsed.error);
  if (parser.handler().duplicate) {
    parsed.duplicate_key = std::move(parser.handler().duplicate);
    parsed.error = {};
  } else if (!parsed.error && consumed < body.size()) {
    // A whole value, then more than whitespace: what boost::json::parse refuses too.
    parsed.error = json::error::extra_data;
  } else if (!parsed.error) {
    parsed.value = parser.handler().release();
  }
  return parsed;
}

}  // namespace coromesh::http::binding_detail
