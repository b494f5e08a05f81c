#pragma once

// Parsing a request's JSON body, refusing a key given twice in one object. Boost.JSON
// 1.81 keeps the last copy silently; like a query parameter given twice, that is
// ambiguous (whatever checked the body before us may have read the other copy), so
// binding refuses it. One pass builds the value and checks the keys as they come.

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace coromesh::http::binding_detail {

struct ParsedJsonBody {
  boost::json::value value;  // null unless both below are empty
  // Not JSON, or nested deeper than the limit: Boost.JSON's reason.
  boost::system::error_code error;
  // The binding path ("a.b[2].c") of the first key given twice in one object.
  std::optional<std::string> duplicate_key;
};

ParsedJsonBody parse_json_refusing_duplicate_keys(std::string_view body, std::size_t max_depth);

}  // namespace coromesh::http::binding_detail
