#pragma once

// Reading an HTTP/1.1 message's framing safely on top of Beast's parser, shared by the
// server (connection.cpp), the client (client.cpp) and coromesh-sidecar's http modes:
// the header counted as a whole against its limit, and the Transfer-Encoding shapes
// Beast accepts but RFC 9112 refuses.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <string_view>

#include "coromesh/http/message.hpp"

namespace coromesh::http::framing {

namespace beast = boost::beast;

using RequestParser = beast::http::request_parser<beast::http::string_body>;

// RFC 9112 §6.3: a request whose Transfer-Encoding does not end in `chunked` has no
// reliable length. Beast reads it as bodiless, so its body would be taken for the next
// request (a smuggling shape); it must be refused with 400 and the connection closed.
inline bool has_unframed_transfer_encoding(const RequestParser& parser) {
  const auto& header = parser.get();
  return header.find(Field::transfer_encoding) != header.end() && !parser.chunked();
}

// `value` without the optional whitespace (spaces, tabs) around it: RFC 9110 §5.6.3's
// OWS, around a field value or a list element.
inline std::string_view trim_ows(std::string_view value) noexcept {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
    value.remove_suffix(1);
  }
  return value;
}

// Whether a request whose Transfer-Encoding ends in `chunked` (checked first, above) has
// any coding besides a lone `chunked`: "gzip, chunked", a coding with parameters, several
// fields. Its body is still in that coding once de-chunked: a coding not implemented here,
// answered 501 (RFC 9112 §6.1 advises it; Envoy answers the same), rather than handed on
// as if it were plain.
inline bool has_coding_besides_chunked(const RequestParser& parser) {
  const auto& header = parser.get();
  int fields = 0;
  bool only_chunked = true;
  for (auto [it, end] = header.equal_range(Field::transfer_encoding); it != end; ++it) {
    const auto value = trim_ows(it->value());
    only_chunked = only_chunked && beast::iequals(value, "chunked");
    ++fields;
  }
  return fields > 0 && (fields > 1 || !only_chunked);
}

namespace detail {

// How a read for the header ended that failed: its error, or for the peer's close
// end_of_stream before a byte of the message and partial_message after, as
// beast::http::async_read says.
template <bool isRequest, class Body>
beast::error_code header_read_failure(const beast::error_code& read_error,
                                      const beast::http::parser<isRequest, Body>& parser) {
  if (read_error != boost::asio::error::eof) {
    return read_error;
  }
  return parser.got_some() ? beast::http::error::partial_message
                           : beast::http::error::end_of_stream;
}

// Parses what a read for the header added to `buffer` and counts it in `taken`: the error
// to end with (malformed, or past `limit`), or none to go on.
template <bool isRequest, class Body>
beast::error_code take_header_bytes(beast::flat_buffer& buffer,
                                    beast::http::parser<isRequest, Body>& parser,
                                    std::size_t& taken, std::size_t limit) {
  beast::error_code ec;
  const auto used = parser.put(buffer.data(), ec);
  buffer.consume(used);
  taken += used;
  if (ec && ec != beast::http::error::need_more) {
    return ec;
  }
  if (taken > limit) {
    return beast::http::error::header_limit;
  }
  return {};
}

}  // namespace detail

// Reads the rest of a message header into `parser`, which has taken `taken` bytes of it.
// Not beast::http::async_read_header: Beast 1.81 compares header_limit with the bytes
// of one put() only and consumes whole fields as they arrive, so a header coming in
// several reads grew past the limit (8 KiB let 12 KB through, and the fields pile up in
// memory). Here every byte the parser takes counts. The parser must not be eager (it
// then stops at the header's end, so `taken` is the header's).
// A peer closing before a byte of the message gives end_of_stream, after some of it
// partial_message, as beast::http::async_read does.
template <class Stream, bool isRequest, class Body>
boost::asio::awaitable<beast::error_code> read_rest_of_header(
    Stream& stream, beast::flat_buffer& buffer, beast::http::parser<isRequest, Body>& parser,
    std::size_t taken, std::size_t limit) {
  while (!parser.is_header_done()) {
    if (taken + buffer.size() > limit) {
      co_return beast::http::error::header_limit;
    }
    auto [read_error, n] = co_await stream.async_read_some(
        buffer.prepare(4096), boost::asio::as_tuple(boost::asio::use_awaitable));
    if (read_error) {
      co_return detail::header_read_failure(read_error, parser);
    }
    buffer.commit(n);
    if (const auto ec = detail::take_header_bytes(buffer, parser, taken, limit)) {
      co_return ec;
    }
  }
  co_return beast::error_code{};
}

// beast::http::async_read with the header limited as a whole (see read_rest_of_header):
// reads one message, starting with what `buffer` already holds, into `parser` (whose
// body_limit applies as usual).
template <class Stream, bool isRequest, class Body>
boost::asio::awaitable<beast::error_code> read_message(Stream& stream, beast::flat_buffer& buffer,
                                                       beast::http::parser<isRequest, Body>& parser,
                                                       std::size_t header_limit) {
  beast::error_code ec;
  parser.eager(false);
  std::size_t taken = 0;
  if (buffer.size() > 0) {
    taken = parser.put(buffer.data(), ec);
    buffer.consume(taken);
    if (ec && ec != beast::http::error::need_more) {
      co_return ec;
    }
  }
  // read_rest_of_header's loop, here rather than in a coroutine of its own: every message
  // of a kept-alive connection needs it (its read starts with an empty buffer), and each
  // nested coroutine is a frame allocated, started and returned from.
  while (!parser.is_header_done()) {
    if (taken + buffer.size() > header_limit) {
      co_return beast::http::error::header_limit;
    }
    auto [read_error, n] = co_await stream.async_read_some(
        buffer.prepare(4096), boost::asio::as_tuple(boost::asio::use_awaitable));
    if (read_error) {
      co_return detail::header_read_failure(read_error, parser);
    }
    buffer.commit(n);
    if (const auto taken_error = detail::take_header_bytes(buffer, parser, taken, header_limit)) {
      co_return taken_error;
    }
  }
  parser.eager(true);
  // The body (or all of it) usually came with the header: parsed here, it needs no
  // beast::http::async_read, whose composed operation costs a trip through the
  // scheduler even when it reads nothing.
  if (!parser.is_done() && buffer.size() > 0) {
    const auto used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec && ec != beast::http::error::need_more) {
      co_return ec;
    }
  }
  if (!parser.is_done()) {
    auto [read_error, n] = co_await beast::http::async_read(
        stream, buffer, parser, boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return read_error;
  }
  co_return beast::error_code{};
}

}  // namespace coromesh::http::framing
