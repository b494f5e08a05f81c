#pragma once

// A message as it goes on the wire, in one contiguous buffer: for the client's requests
// and coromesh-sidecar's re-framed answers. Beast's generic serializer walks nested
// buffer-sequence views on every write (several times the cost of the copy for the small
// messages of a service mesh) and may hand the socket several pieces; one flat buffer,
// reused per connection, is one send (and one TLS record).
//
// Both write the message exactly as Beast's serializer would, fields as they are (no
// Content-Length is added or changed), for a body that is not chunked; a chunked one
// (message.chunked()) must go through Beast's serializer, which encodes the chunks.

#include <string>

#include "coromesh/http/message.hpp"

namespace coromesh::http {

// Appends the request line, the fields, the blank line and the body to `out`.
void append_request(const Request& request, std::string& out);

// Appends the status line, the fields, the blank line and the body to `out`. A reason
// left empty is the status's standard one, as Beast writes it.
void append_response_as_is(const Response& response, std::string& out);

}  // namespace coromesh::http
