#pragma once

// The two halves of one http::Client exchange, run side by side (client.cpp): the
// request's write and the response's read. Private to the http module.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <tuple>

#include "coromesh/http/flat_write.hpp"
#include "coromesh/http/framing.hpp"
#include "coromesh/http/message.hpp"

namespace coromesh::http::detail {

inline constexpr std::size_t kHeaderLimit = 64 * 1024;  // of a response
// A request body up to this size is written without a read beside it: with its header
// it stays well under a TCP socket's smallest default send buffer on Linux (16 KiB,
// net.ipv4.tcp_wmem), so the write completes whether or not the callee reads.
inline constexpr std::size_t kWrittenAtOnce = 8 * 1024;
// Interim (1xx) responses skipped before the final one; more is a bad response.
inline constexpr std::size_t kMaxInterimResponses = 8;

// 1xx but 101, which switches the connection to another protocol.
constexpr bool is_interim(unsigned status) noexcept {
  return status >= 100 && status < 200 && status != 101;
}

// How the request's write ended; `done` once it has.
struct RequestWrite {
  bool done = false;
  boost::system::error_code ec;
};

// Writes `request` (one buffer, one write: over TLS one record, see http/flat_write.hpp;
// a chunked one through Beast's serializer). `chunked`: request.chunked(), as the caller
// found it.
template <class Stream>
boost::asio::awaitable<void> write_request(Stream& stream, Request& request, bool chunked,
                                           std::string& flat, RequestWrite& write) {
  if (chunked) {  // (not after prepare_payload: a string body has a length)
    std::tie(write.ec, std::ignore) = co_await boost::beast::http::async_write(
        stream, request, boost::asio::as_tuple(boost::asio::use_awaitable));
  } else {
    flat.clear();
    append_request(request, flat);
    std::tie(write.ec, std::ignore) = co_await boost::asio::async_write(
        stream, boost::asio::buffer(flat), boost::asio::as_tuple(boost::asio::use_awaitable));
  }
  write.done = true;
}

// How the response's read ended: its error, the interim responses skipped, and whether it
// stopped a write still going.
struct ResponseRead {
  boost::system::error_code ec;
  std::size_t interim = 0;
  bool stopped_write = false;
};

// Reads the final response into `parser`. RFC 9110 §15.2: interim (1xx) responses may come
// before it, asked for or not (100 Continue, 102 Processing, 103 Early Hints). They carry
// nothing this client uses and are skipped, each with a parser of its own; a bounded
// number of them (more: read.interim > kMaxInterimResponses), so a callee sending nothing
// else cannot keep the call reading until its deadline. Once it ends, a write still going
// is stopped (the connection is then never reused): the callee has answered, or the
// connection is lost, before it read the whole request.
template <class Stream>
boost::asio::awaitable<void> read_response(
    Stream& stream, boost::beast::flat_buffer& buffer,
    std::optional<boost::beast::http::response_parser<boost::beast::http::string_body>>& parser,
    Verb method, std::size_t body_limit, const RequestWrite& write, ResponseRead& read) {
  for (;; ++read.interim) {
    if (read.interim > kMaxInterimResponses) {
      break;
    }
    parser.emplace();
    parser->body_limit(body_limit);
    parser->header_limit(kHeaderLimit);
    if (method == Verb::head) {
      parser->skip(true);
    }
    // The whole header counted against the limit, however it is split (see framing.hpp).
    read.ec = co_await framing::read_message(stream, buffer, *parser, kHeaderLimit);
    if (read.ec || !is_interim(parser->get().result_int())) {
      break;
    }
  }
  if (!write.done) {
    // Our side of the connection shut: the write waiting for room fails (broken pipe)
    // and so does any next step of it. A cancel() would reach only a step waiting right
    // now, not one whose completion is already queued and is followed by another.
    read.stopped_write = true;
    boost::system::error_code ignored;
    boost::beast::get_lowest_layer(stream).socket().shutdown(
        boost::asio::ip::tcp::socket::shutdown_send, ignored);
  }
}

}  // namespace coromesh::http::detail
