#pragma once

// What the HTTP fuzz targets share: one client connection's bytes sent to a server on
// loopback (then half-closed) and its whole answer read, and the check that an answer
// is nothing but well-formed HTTP responses.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fuzz {

namespace asio = boost::asio;
namespace beast = boost::beast;

inline void check(bool condition) {
  if (!condition) {
    std::abort();  // libFuzzer reports the input that got here
  }
}

// Sends `bytes`, half-closes, and returns everything the server sends until it closes.
inline std::string exchange(std::uint16_t port, std::string_view bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  check(fd >= 0);
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  check(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      break;  // the server may refuse early (431, 413) and close
    }
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string received;
  char chunk[4096];
  for (;;) {
    const auto n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n == 0) {
      break;
    }
    if (n < 0) {
      check(errno == ECONNRESET);  // a timeout (EAGAIN) means the server hung
      break;
    }
    received.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return received;
}

// Whether one response with an allowed status starts at `at`; sets `used`. An answer to
// a HEAD has a Content-Length but no body (`headless`).
inline bool one_response(std::string_view received, bool headless,
                         std::span<const unsigned> allowed, std::size_t& used) {
  beast::http::response_parser<beast::http::string_body> parser;
  parser.eager(true);
  parser.skip(headless);
  beast::error_code ec;
  used = parser.put(asio::buffer(received.data(), received.size()), ec);
  if (ec || !parser.is_done()) {
    return false;
  }
  const auto status = parser.get().result_int();
  if (std::find(allowed.begin(), allowed.end(), status) == allowed.end()) {
    return false;
  }
  return headless || status < 400 || parser.get().body().starts_with(R"({"error":")");
}

// Whether the bytes from `at` on are a sequence of such responses. Pipelined HEADs make
// the boundaries ambiguous to an observer that does not track the requests, so both
// readings are tried (memoized: each offset is judged once).
inline bool responses_from(std::string_view received, std::size_t at,
                           std::span<const unsigned> allowed, std::vector<std::int8_t>& memo) {
  if (at == received.size()) {
    return true;
  }
  if (memo[at] >= 0) {
    return memo[at] == 1;
  }
  bool ok = false;
  for (const bool headless : {false, true}) {
    std::size_t used = 0;
    if (!ok && one_response(received.substr(at), headless, allowed, used) && used > 0) {
      ok = responses_from(received, at + used, allowed, memo);
    }
  }
  memo[at] = ok ? 1 : 0;
  return ok;
}

// Whether every byte the server sent parses as complete responses, each with a status in
// `allowed` and, for an error status, a JSON error body.
inline bool are_responses(std::string_view received, std::initializer_list<unsigned> allowed) {
  std::vector<std::int8_t> memo(received.size(), -1);
  return responses_from(received, 0, std::span<const unsigned>(allowed.begin(), allowed.size()),
                        memo);
}

}  // namespace fuzz
