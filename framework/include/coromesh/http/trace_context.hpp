#pragma once

// W3C Trace Context (`traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`):
// the one place that reads and writes it. The server continues an incoming trace (or
// starts one) for its log lines; client stubs send it on with a span id of their own.
// Pure functions; the random ids come from a per-thread generator.

#include <optional>
#include <string>
#include <string_view>

namespace coromesh::http {

// The trace id of a valid traceparent value; nullopt for anything else (wrong shape,
// upper-case or non-hex digits, the invalid all-zero id).
std::optional<std::string_view> trace_id_of(std::string_view traceparent) noexcept;

// Sets `id` to `length` random lower-case hex digits, never all zero, reusing its buffer
// (the server does this per request).
void assign_random_hex_id(std::string& id, std::size_t length);

// A traceparent continuing `trace_id` (a fresh trace when it is not 32 hex digits) with a
// new span id, sampled.
std::string make_traceparent(std::string_view trace_id);

}  // namespace coromesh::http
