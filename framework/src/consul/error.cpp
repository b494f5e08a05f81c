#include "coromesh/consul/error.hpp"

#include <boost/beast/http/status.hpp>

namespace coromesh::consul {
namespace {

constexpr std::size_t kExcerpt = 300;

// Consul's error bodies are short plain text; cap them so a large or binary body cannot
// flood a log line.
std::string excerpt(std::string_view body) {
  std::string out(body.substr(0, kExcerpt));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) {
    out.pop_back();
  }
  if (body.size() > kExcerpt) {
    out += "...";
  }
  return out;
}

std::string describe(const std::string& request, int status, const std::string& body,
                     std::string_view problem) {
  auto reason = boost::beast::http::obsolete_reason(
      boost::beast::http::int_to_status(static_cast<unsigned>(status)));
  std::string out = "consul " + request + ": " + std::to_string(status);
  if (!reason.empty() && reason != "<unknown-status>") {
    out += " " + std::string(reason);
  }
  if (!problem.empty()) {
    out += ", malformed answer (" + std::string(problem) + ")";
  }
  if (!body.empty()) {
    out += ": " + body;
  }
  return out;
}

}  // namespace

ConsulError::ConsulError(std::string request, int status, std::string_view body,
                         std::string_view problem)
    : std::runtime_error(describe(request, status, excerpt(body), problem)),
      request_(std::move(request)),
      status_(status),
      body_(excerpt(body)) {}

bool ConsulError::caller_fault() const noexcept {
  return status_ >= 400 && status_ < 500 && status_ != 429;
}

}  // namespace coromesh::consul
