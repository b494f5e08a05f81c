#pragma once

// Internal: writes a Response onto the wire as one contiguous buffer. Beast's generic
// serializer walks nested buffer-sequence views for every write; for string bodies a
// flat copy into a reused per-connection buffer is several times cheaper.

#include <string>

#include "coromesh/http/message.hpp"

namespace coromesh::http::detail {

// Whether an answer with this status has no content (RFC 9110 §6.4.1: 1xx, 204, 304).
bool has_no_content(unsigned status) noexcept;

// Appends the status line, the fields, the blank line and the body, framed by a
// Content-Length of the body's size in place of any framing field the response holds.
// An answer that has no content (has_no_content) is written without its body, a 1xx or
// 204 without framing fields, a 304 with the Content-Length it has, if any. With `head`
// (the answer to a HEAD) the body is left out and its length still announced.
void append_response(const Response& response, std::string& out, bool head = false);

// Whether a field's name or value holds CR, LF or NUL: written as they are, they would
// end the field early and let whoever chose the bytes write fields or a body of their
// own (response splitting). Beast's fields accept any bytes.
bool has_unsafe_field(const Response& response) noexcept;

}  // namespace coromesh::http::detail
