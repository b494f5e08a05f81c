#pragma once

// Building blocks of the sidecar integration tests: a backend that tells which instance
// answered, blocking clients (plain TCP and OpenSSL, to play hostile peers), sidecars and
// `consul connect proxy` as child processes, and reading their /metrics.

#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "consul_agent.hpp"
#include "http_fetch.hpp"
#include "test_env.hpp"

namespace coromesh::testing {

using namespace std::chrono_literals;

// Answers each connection, once the client has half-closed or sent a newline, with
// "<tag>:" and every byte it read, then closes. Runs on its own thread until destroyed.
// (`consul connect proxy` closes both directions when one ends, so through it a client
// ends its request with a newline instead of a half-close.)
class TaggedEchoServer {
 public:
  explicit TaggedEchoServer(std::string tag);
  ~TaggedEchoServer();
  std::uint16_t port() const noexcept { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::string tag_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// A plain HTTP/1.1 backend (keep-alive): GET/POST anything answers 200 with
// "<tag>|<traceparent>|<x-coromesh-deadline-ms>|<x-coromesh-peer>" (empty fields when
// absent), except paths starting /fail, answered 503, paths starting /forged, answered 503
// with x-coromesh-not-delivered: 1 (the service's own code claiming that nothing reached
// it), paths starting /slow, answered after 2 s, paths starting /hold, answered once
// release_held() is called (30 s at most), paths starting /drop, read and then closed
// without an answer, paths starting /limited,
// answered 429 {"error":"rate_limited",...} with Retry-After: 1 (as a coromesh service's
// rate limiter answers), and paths starting /headers, answered with the names of the
// request's fields, one per line. Counts requests and connections. Own thread until
// destroyed.
class TaggedHttpServer {
 public:
  explicit TaggedHttpServer(std::string tag);
  ~TaggedHttpServer();
  std::uint16_t port() const noexcept { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int requests() const noexcept { return requests_.load(); }
  int connections() const noexcept { return connections_.load(); }
  // /hold requests whose connection the caller closed before they were answered (which
  // ends them: a held request stops waiting when its connection turns readable).
  int abandoned() const noexcept { return abandoned_.load(); }
  // Answers every /hold request held now, and any that comes later at once: a test
  // decides when the backend answers instead of racing a fixed delay.
  void release_held();

  // The /hold requests waiting (on the server's thread only).
  struct HeldRequests {
    bool released = false;
    std::list<boost::asio::steady_timer*> waiting;
  };

 private:
  std::string tag_;
  HeldRequests held_;  // before io_: the frames io_ destroys may point at it
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<int> requests_{0};
  std::atomic<int> connections_{0};
  std::atomic<int> abandoned_{0};
  std::thread thread_;
};

// One keep-alive client connection to 127.0.0.1:port; request() returns status and body
// (status 0 when the connection failed).
class HttpConnection {
 public:
  explicit HttpConnection(std::uint16_t port);
  ~HttpConnection();
  std::pair<int, std::string> request(
      const std::string& method, const std::string& target,
      const std::vector<std::pair<std::string, std::string>>& headers = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A blocking connection to 127.0.0.1:port with send and receive timeouts (a hostile
// client's raw socket); -1 when it cannot connect. The caller closes it.
int connect_blocking(std::uint16_t port, std::chrono::milliseconds timeout);

// Connects to 127.0.0.1:port, sends `payload`, half-closes (unless told not to), and
// reads until the peer closes. "" when the connection fails or is closed without an
// answer.
std::string exchange(std::uint16_t port, const std::string& payload,
                     std::chrono::milliseconds timeout = 5s, bool half_close = true);

// Sends `payload` to 127.0.0.1:port and reads, without a half-close (a client waiting
// for its answer), until the peer ends the connection: what came before the end, or
// nullopt when the connection is still open after `patience` without a byte (held).
std::optional<std::string> read_until_closed(std::uint16_t port, const std::string& payload,
                                             std::chrono::milliseconds patience);

// An HTTP/1.1 request whose Connection header is a list of `tokens` tokens without spaces
// ("x,x,...,x,close"): Beast re-states such a list with ", " between tokens when it sets
// the keep-alive state, and beyond 64 KiB a field value throws std::length_error.
std::string request_with_connection_tokens(std::size_t tokens);

// Waits until `port` answers "ping" with "<tag>:ping" (a TaggedEchoServer behind it) for
// one of `tags`. With `line`, the request ends with a newline instead of a half-close.
bool reaches(std::uint16_t port, const std::vector<std::string>& tags,
             std::chrono::milliseconds timeout = 30s, bool line = false);

// The same over TLS with `context` (a hostile or a legitimate client); "" when the
// handshake or anything after it fails.
std::string tls_exchange(std::uint16_t port, SSL_CTX* context, const std::string& payload,
                         std::chrono::milliseconds timeout = 5s);

// An OpenSSL client context presenting `cert_pem` (with chain) and `key_pem`, trusting
// nothing (the hostile client does not check the sidecar); TLS versions limited to
// [min_version, max_version] when given.
std::shared_ptr<SSL_CTX> client_context(const std::string& cert_pem, const std::string& key_pem,
                                        int min_version = 0, int max_version = 0);

// The sum of every series of `family` in a Prometheus exposition whose labels contain
// each of `label_parts` (e.g. R"(reason="untrusted_chain")").
double metric_sum(const std::string& exposition, const std::string& family,
                  const std::vector<std::string>& label_parts = {});

// A coromesh-sidecar process with an admin port of its own; the constructor waits for
// its /health.
class SidecarProcess {
 public:
  SidecarProcess(const ConsulAgent& consul, const std::filesystem::path& log_dir,
                 const std::string& log_name, std::vector<std::string> args);
  ~SidecarProcess();
  std::uint16_t admin_port() const noexcept { return admin_port_; }
  std::string metrics() const;
  double metric(const std::string& family, const std::vector<std::string>& label_parts = {}) const {
    return metric_sum(metrics(), family, label_parts);
  }
  std::string log_tail(std::size_t max_bytes = 4000) const { return process_->log_tail(max_bytes); }
  ChildProcess& process() { return *process_; }

 private:
  std::uint16_t admin_port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

// `consul connect proxy` with `args` (plus -http-addr of `consul`).
std::unique_ptr<ChildProcess> consul_connect_proxy(const ConsulAgent& consul,
                                                   const std::filesystem::path& log_dir,
                                                   const std::string& log_name,
                                                   std::vector<std::string> args);

// Whether Consul lists `count` passing Connect endpoints for `service`.
bool connect_endpoints_passing(const ConsulAgent& consul, const std::string& service,
                               std::size_t count);

}  // namespace coromesh::testing
