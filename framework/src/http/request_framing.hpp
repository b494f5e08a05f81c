#pragma once

// Internal: how the server reads a request's framing safely on top of Beast's parser
// (connection.cpp): the header counted as a whole against its limit, and the
// Transfer-Encoding shapes Beast accepts but RFC 9112 refuses.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>

#include "coromesh/http/message.hpp"

namespace coromesh::http::detail {

namespace beast = boost::beast;

using RequestParser = beast::http::request_parser<beast::http::string_body>;

// RFC 9112 §6.3: a request whose Transfer-Encoding does not end in `chunked` has no
// reliable length. Beast reads it as bodiless, so its body would be taken for the next
// request (a smuggling shape); it must be refused with 400 and the connection closed.
inline bool has_unframed_transfer_encoding(const RequestParser& parser) {
  const auto& header = parser.get();
  return header.find(Field::transfer_encoding) != header.end() && !parser.chunked();
}

// Reads the rest of a request header into `parser`, which has taken `taken` bytes of it.
// Not beast::http::async_read_header: Beast 1.81 compares header_limit with the bytes
// of one put() only and consumes whole fields as they arrive, so a header coming in
// several reads grew past the limit (8 KiB let 12 KB through, and the fields pile up in
// memory). Here every byte the parser takes counts.
template <class Stream>
boost::asio::awaitable<beast::error_code> read_rest_of_header(Stream& stream,
                                                              beast::flat_buffer& buffer,
                                                              RequestParser& parser,
                                                              std::size_t taken,
                                                              std::size_t limit) {
  beast::error_code ec;
  while (!parser.is_header_done()) {
    if (taken + buffer.size() > limit) {
      co_return beast::http::error::header_limit;
    }
    // (The parser is not eager: it stops at the header's end, so `taken` is the header's.)
    auto [read_error, n] = co_await stream.async_read_some(
        buffer.prepare(4096), boost::asio::as_tuple(boost::asio::use_awaitable));
    if (read_error) {
      co_return read_error == boost::asio::error::eof ? beast::http::error::partial_message
                                                      : read_error;
    }
    buffer.commit(n);
    const auto used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    taken += used;
    if (ec && ec != beast::http::error::need_more) {
      co_return ec;
    }
    if (taken > limit) {
      co_return beast::http::error::header_limit;
    }
  }
  co_return beast::error_code{};
}

}  // namespace coromesh::http::detail
