#pragma once

// The HTTP message types used throughout coromesh: Beast's string-bodied request and
// response. Kept in one light header so interfaces can name them without pulling in
// the server or the client.

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>

namespace coromesh::http {

namespace beast_http = boost::beast::http;

using Request = beast_http::request<beast_http::string_body>;
using Response = beast_http::response<beast_http::string_body>;
using Verb = beast_http::verb;
using Status = beast_http::status;
using Field = beast_http::field;

// Header carrying the W3C trace context across hops.
inline constexpr const char* kTraceParentHeader = "traceparent";

}  // namespace coromesh::http
