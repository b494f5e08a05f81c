#pragma once

// Finding a key given twice in one JSON object. Boost.JSON 1.81 keeps the last copy
// silently; like a query parameter given twice, that is ambiguous (whatever checked the
// body before us may have read the other copy), so binding refuses it.

#include <optional>
#include <string>
#include <string_view>

namespace coromesh::http::binding_detail {

// The binding path of the first key given twice in an object of `json` ("a.b[2].c"), or
// nullopt when none is. `json` must already have parsed without error.
std::optional<std::string> find_duplicate_key(std::string_view json);

}  // namespace coromesh::http::binding_detail
