#pragma once

// A deliberately simple, blocking HTTP/1.1 client for tests: one request per
// connection, a hard deadline, no pooling. Tests use it to talk to Consul, Prometheus
// and the services under test without depending on the framework's own client.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace coromesh::testing {

struct FetchResult {
  int status = 0;  // 0 when the request failed
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string error;                           // why it failed, when status == 0
};

struct FetchOptions {
  std::string method = "GET";
  std::string body;
  std::string content_type = "application/json";
  std::map<std::string, std::string> headers;
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
};

FetchResult http_fetch(const std::string& host, std::uint16_t port, const std::string& target,
                       const FetchOptions& options = {});

// Sends raw bytes and returns whatever the server answers before closing or the
// timeout; for tests of malformed and hostile input.
std::string raw_exchange(const std::string& host, std::uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace coromesh::testing
