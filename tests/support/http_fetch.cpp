#include "http_fetch.hpp"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cctype>

namespace coromesh::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

FetchResult http_fetch(const std::string& host, std::uint16_t port, const std::string& target,
                       const FetchOptions& options) {
  FetchResult result;
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::string_body> req{http::string_to_verb(options.method), target, 11};
  req.set(http::field::host, host + ":" + std::to_string(port));
  req.set(http::field::connection, "close");
  for (const auto& [name, value] : options.headers) {
    req.set(name, value);
  }
  if (!options.body.empty() || options.method == "POST" || options.method == "PUT") {
    req.set(http::field::content_type, options.content_type);
    req.body() = options.body;
    req.prepare_payload();
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  parser.skip(options.method == "HEAD");

  auto fail = [&](beast::error_code ec, const char* what) {
    result.status = 0;
    result.error = std::string(what) + ": " + ec.message();
  };
  stream.expires_after(options.timeout);
  tcp::endpoint endpoint(asio::ip::make_address(host), port);
  stream.async_connect(endpoint, [&](beast::error_code ec) {
    if (ec) {
      return fail(ec, "connect");
    }
    http::async_write(stream, req, [&](beast::error_code wec, std::size_t) {
      if (wec) {
        return fail(wec, "write");
      }
      http::async_read(stream, buffer, parser, [&](beast::error_code rec, std::size_t) {
        if (rec) {
          return fail(rec, "read");
        }
        auto& res = parser.get();
        result.status = static_cast<int>(res.result_int());
        result.body = res.body();
        for (const auto& field : res) {
          std::string name(field.name_string());
          std::transform(name.begin(), name.end(), name.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
          result.headers[name] = std::string(field.value());
        }
      });
    });
  });
  ioc.run();
  return result;
}

std::string raw_exchange(const std::string& host, std::uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  std::string received;
  std::array<char, 4096> chunk{};
  stream.expires_after(timeout);
  std::function<void()> read_more = [&] {
    stream.async_read_some(asio::buffer(chunk), [&](beast::error_code ec, std::size_t n) {
      received.append(chunk.data(), n);
      if (!ec) {
        read_more();
      }
    });
  };
  stream.async_connect(tcp::endpoint(asio::ip::make_address(host), port),
                       [&](beast::error_code ec) {
                         if (ec) {
                           return;
                         }
                         asio::async_write(stream, asio::buffer(bytes),
                                           [&](beast::error_code, std::size_t) { read_more(); });
                       });
  ioc.run();
  return received;
}

}  // namespace coromesh::testing
