#pragma once

// Small text encodings the agent API needs: percent-encoding for paths and query
// values, base64 (KV values), Go duration strings. Private to the consul module.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace coromesh::consul::detail {

// Percent-encodes everything but RFC 3986 unreserved characters; with keep_slashes,
// '/' passes through too (KV keys are paths).
std::string url_encode(std::string_view text, bool keep_slashes = false);

// Standard base64 with padding; nullopt for anything else.
std::optional<std::string> base64_decode(std::string_view text);

// "1500ms": Go's time.ParseDuration reads it, and milliseconds lose nothing we set.
std::string go_duration(std::chrono::milliseconds duration);

}  // namespace coromesh::consul::detail
