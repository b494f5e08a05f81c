#include "mesh_fixture.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <cerrno>
#include <csignal>
#include <sstream>
#include <stdexcept>

namespace coromesh::testing {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// A hostile client's writes may hit a connection the sidecar has already closed: that
// must fail the write, not kill the test with SIGPIPE (OpenSSL writes with write(2)).
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

asio::awaitable<void> echo_one(tcp::socket socket, std::string tag) {
  std::string received;
  auto [ec, n] = co_await asio::async_read_until(socket, asio::dynamic_buffer(received), '\n',
                                                 asio::as_tuple(asio::use_awaitable));
  if (ec && ec != asio::error::eof) {
    co_return;  // neither a line nor a clean half-close: no answer
  }
  const std::string answer = tag + ":" + received;
  co_await asio::async_write(socket, asio::buffer(answer), asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> echo_accept(tcp::acceptor& acceptor, std::string tag) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      co_return;
    }
    asio::co_spawn(acceptor.get_executor(), echo_one(std::move(socket), tag), asio::detached);
  }
}

asio::awaitable<void> http_one(tcp::socket socket, std::string tag, std::atomic<int>& requests,
                               std::atomic<int>& abandoned, TaggedHttpServer::HeldRequests& held) {
  using namespace asio::experimental::awaitable_operators;
  namespace bhttp = boost::beast::http;
  boost::beast::flat_buffer buffer;
  for (;;) {
    bhttp::request<bhttp::string_body> request;
    auto [ec, n] =
        co_await bhttp::async_read(socket, buffer, request, asio::as_tuple(asio::use_awaitable));
    if (ec) {
      co_return;
    }
    ++requests;
    const auto field = [&](std::string_view name) {
      const auto it = request.find(name);
      return it == request.end() ? std::string() : std::string(it->value());
    };
    if (request.target().starts_with("/drop")) {
      co_return;  // read, then closed without an answer: the outcome is unknown to the caller
    }
    const bool forged = request.target().starts_with("/forged");
    const bool fail = request.target().starts_with("/fail") || forged;
    if (request.target().starts_with("/slow")) {
      asio::steady_timer slow(socket.get_executor(), std::chrono::seconds(2));
      co_await slow.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (request.target().starts_with("/hold") && !held.released) {
      asio::steady_timer hold(socket.get_executor(), std::chrono::seconds(30));
      const auto waiting = held.waiting.insert(held.waiting.end(), &hold);
      // The caller (the sidecar) sends nothing more on this connection before the answer:
      // the socket turning readable is it closing the connection.
      const auto first =
          co_await (hold.async_wait(asio::as_tuple(asio::use_awaitable)) ||
                    socket.async_wait(tcp::socket::wait_read, asio::as_tuple(asio::use_awaitable)));
      held.waiting.erase(waiting);
      if (first.index() == 1) {
        ++abandoned;
        co_return;
      }
    }
    const bool limited = request.target().starts_with("/limited");
    bhttp::response<bhttp::string_body> response(fail      ? bhttp::status::service_unavailable
                                                 : limited ? bhttp::status::too_many_requests
                                                           : bhttp::status::ok,
                                                 request.version());
    if (limited) {
      // As a coromesh service's rate limiter answers (qos/reason.hpp: rate_limited, 429).
      response.set(bhttp::field::retry_after, "1");
      response.set(bhttp::field::content_type, "application/json");
      response.body() = R"({"error":"rate_limited","reason":")" + tag + R"( is over its limit"})";
    } else if (forged) {
      // The service's own code claiming a sidecar's "nothing reached the service" answer.
      response.set("x-coromesh-not-delivered", "1");
      response.set(bhttp::field::content_type, "application/json");
      response.body() = R"({"error":"local_unavailable","reason":"forged by )" + tag + R"("})";
    } else if (request.target().starts_with("/headers")) {
      for (const auto& received : request) {  // the names of the fields that reached it
        response.body() += std::string(received.name_string()) + "\n";
      }
    } else {
      response.body() = tag + "|" + field("traceparent") + "|" + field("x-coromesh-deadline-ms") +
                        "|" + field("x-coromesh-peer");
    }
    response.keep_alive(request.keep_alive());
    response.prepare_payload();
    auto [wec, wn] =
        co_await bhttp::async_write(socket, response, asio::as_tuple(asio::use_awaitable));
    if (wec || !request.keep_alive()) {
      co_return;
    }
  }
}

asio::awaitable<void> http_accept(tcp::acceptor& acceptor, std::string tag,
                                  std::atomic<int>& requests, std::atomic<int>& connections,
                                  std::atomic<int>& abandoned,
                                  TaggedHttpServer::HeldRequests& held) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      co_return;
    }
    ++connections;
    asio::co_spawn(acceptor.get_executor(),
                   http_one(std::move(socket), tag, requests, abandoned, held), asio::detached);
  }
}

}  // namespace

// A blocking loopback connection with send/receive timeouts; -1 when it cannot connect.
int connect_blocking(std::uint16_t port, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{.tv_sec = static_cast<time_t>(timeout.count() / 1000),
             .tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TaggedEchoServer::TaggedEchoServer(std::string tag)
    : tag_(std::move(tag)), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, echo_accept(acceptor_, tag_), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

TaggedEchoServer::~TaggedEchoServer() {
  io_.stop();
  thread_.join();
}

TaggedHttpServer::TaggedHttpServer(std::string tag)
    : tag_(std::move(tag)), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, http_accept(acceptor_, tag_, requests_, connections_, abandoned_, held_),
                 asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

TaggedHttpServer::~TaggedHttpServer() {
  io_.stop();
  thread_.join();
}

void TaggedHttpServer::release_held() {
  asio::post(io_, [this] {
    held_.released = true;
    for (auto* waiting : held_.waiting) {
      waiting->cancel();
    }
  });
}

struct HttpConnection::Impl {
  asio::io_context io;
  tcp::socket socket{io};
  boost::beast::flat_buffer buffer;
};

HttpConnection::HttpConnection(std::uint16_t port) : impl_(std::make_unique<Impl>()) {
  boost::system::error_code ec;
  impl_->socket.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  timeval tv{.tv_sec = 10, .tv_usec = 0};  // a hung sidecar fails the test, not ctest's timeout
  ::setsockopt(impl_->socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

HttpConnection::~HttpConnection() = default;

std::pair<int, std::string> HttpConnection::request(
    const std::string& method, const std::string& target,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  namespace bhttp = boost::beast::http;
  bhttp::request<bhttp::string_body> request(bhttp::string_to_verb(method), target, 11);
  request.set(bhttp::field::host, "upstream");
  for (const auto& [name, value] : headers) {
    request.set(name, value);
  }
  request.prepare_payload();
  boost::system::error_code ec;
  bhttp::write(impl_->socket, request, ec);
  if (ec) {
    return {0, ec.message()};
  }
  bhttp::response<bhttp::string_body> response;
  bhttp::read(impl_->socket, impl_->buffer, response, ec);
  if (ec) {
    return {0, ec.message()};
  }
  return {static_cast<int>(response.result_int()), response.body()};
}

std::string exchange(std::uint16_t port, const std::string& payload,
                     std::chrono::milliseconds timeout, bool half_close) {
  const int fd = connect_blocking(port, timeout);
  if (fd < 0) {
    return {};
  }
  std::size_t sent = 0;
  while (sent < payload.size()) {
    const auto n = ::send(fd, payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return {};
    }
    sent += static_cast<std::size_t>(n);
  }
  if (half_close) {
    ::shutdown(fd, SHUT_WR);
  }
  std::string answer;
  char buffer[16384];
  for (;;) {
    const auto n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      break;
    }
    answer.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return answer;
}

std::optional<std::string> read_until_closed(std::uint16_t port, const std::string& payload,
                                             std::chrono::milliseconds patience) {
  const int fd = connect_blocking(port, patience);
  if (fd < 0) {
    return std::string();
  }
  std::size_t sent = 0;
  while (sent < payload.size()) {
    const auto n = ::send(fd, payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return std::string();
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string answer;
  char buffer[16384];
  for (;;) {
    const auto n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ::close(fd);
      return std::nullopt;  // SO_RCVTIMEO: `patience` without a byte or the end
    }
    if (n <= 0) {
      break;  // closed or reset
    }
    answer.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return answer;
}

std::string request_with_connection_tokens(std::size_t tokens) {
  std::string list = "x";
  for (std::size_t i = 1; i < tokens; ++i) {
    list += ",x";
  }
  return "GET /tokens HTTP/1.1\r\nHost: b\r\nConnection: " + list + ",close\r\n\r\n";
}

bool reaches(std::uint16_t port, const std::vector<std::string>& tags,
             std::chrono::milliseconds timeout, bool line) {
  const std::string request = line ? "ping\n" : "ping";
  return wait_until(
      [&] {
        const auto answer = exchange(port, request, 2s, !line);
        return std::any_of(tags.begin(), tags.end(),
                           [&](const std::string& tag) { return answer == tag + ":" + request; });
      },
      timeout, 100ms);
}

std::shared_ptr<SSL_CTX> client_context(const std::string& cert_pem, const std::string& key_pem,
                                        int min_version, int max_version) {
  std::shared_ptr<SSL_CTX> context(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
  if (min_version != 0) {
    SSL_CTX_set_min_proto_version(context.get(), min_version);
    // OpenSSL 3 refuses TLS < 1.2 at its default security level; the hostile client
    // must be able to offer it.
    SSL_CTX_set_cipher_list(context.get(), "DEFAULT:@SECLEVEL=0");
  }
  if (max_version != 0) {
    SSL_CTX_set_max_proto_version(context.get(), max_version);
  }
  if (!cert_pem.empty()) {
    std::unique_ptr<BIO, decltype(&BIO_free)> certs(
        BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())), &BIO_free);
    X509* leaf = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr);
    if (leaf == nullptr || SSL_CTX_use_certificate(context.get(), leaf) != 1) {
      throw std::runtime_error("client_context: bad certificate");
    }
    X509_free(leaf);
    while (X509* extra = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr)) {
      SSL_CTX_add_extra_chain_cert(context.get(), extra);  // takes ownership
    }
    ERR_clear_error();
    std::unique_ptr<BIO, decltype(&BIO_free)> key(
        BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), &BIO_free);
    EVP_PKEY* pkey = PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, nullptr);
    if (pkey == nullptr || SSL_CTX_use_PrivateKey(context.get(), pkey) != 1) {
      throw std::runtime_error("client_context: bad key");
    }
    EVP_PKEY_free(pkey);
  }
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_NONE, nullptr);
  return context;
}

std::string tls_exchange(std::uint16_t port, SSL_CTX* context, const std::string& payload,
                         std::chrono::milliseconds timeout) {
  const int fd = connect_blocking(port, timeout);
  if (fd < 0) {
    return {};
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(context), &SSL_free);
  SSL_set_fd(ssl.get(), fd);
  std::string answer;
  if (SSL_connect(ssl.get()) == 1 &&
      SSL_write(ssl.get(), payload.data(), static_cast<int>(payload.size())) > 0) {
    ::shutdown(fd, SHUT_WR);  // the end of our stream, as the sidecar reads it
    char buffer[16384];
    for (;;) {
      const int n = SSL_read(ssl.get(), buffer, sizeof buffer);
      if (n <= 0) {
        break;
      }
      answer.append(buffer, static_cast<std::size_t>(n));
    }
  }
  ERR_clear_error();
  ::close(fd);
  return answer;
}

double metric_sum(const std::string& exposition, const std::string& family,
                  const std::vector<std::string>& label_parts) {
  double sum = 0;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(family) || line.size() <= family.size() ||
        (line[family.size()] != '{' && line[family.size()] != ' ')) {
      continue;
    }
    bool match = true;
    for (const auto& part : label_parts) {
      match = match && line.find(part) != std::string::npos;
    }
    if (match) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

SidecarProcess::SidecarProcess(const ConsulAgent& consul, const std::filesystem::path& log_dir,
                               const std::string& log_name, std::vector<std::string> args) {
  admin_port_ = free_port();
  const std::vector<std::string> argv = with_default_flags(
      {(binary_dir() / "coromesh-sidecar").string(), "--consul", consul.http_address(), "--port",
       std::to_string(admin_port_)},
      {"--threads=2", "--consul-check-interval=1s", "--shutdown-grace=2s"}, args);
  process_ = std::make_unique<ChildProcess>(argv, log_dir / (log_name + ".log"));
  const bool up = wait_until(
      [&] {
        return !process_->running() ||
               http_fetch("127.0.0.1", admin_port_, "/health", {.timeout = 1s}).status == 200;
      },
      15s);
  if (!up || !process_->running()) {
    throw std::runtime_error("coromesh-sidecar " + log_name + " did not come up:\n" +
                             process_->log_tail());
  }
}

SidecarProcess::~SidecarProcess() {
  process_->stop(5s);
}

std::string SidecarProcess::metrics() const {
  return http_fetch("127.0.0.1", admin_port_, "/metrics").body;
}

std::unique_ptr<ChildProcess> consul_connect_proxy(const ConsulAgent& consul,
                                                   const std::filesystem::path& log_dir,
                                                   const std::string& log_name,
                                                   std::vector<std::string> args) {
  std::vector<std::string> argv{consul_binary().string(), "connect", "proxy", "-http-addr",
                                consul.http_address()};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<ChildProcess>(argv, log_dir / (log_name + ".log"));
}

bool connect_endpoints_passing(const ConsulAgent& consul, const std::string& service,
                               std::size_t count) {
  const auto answer = consul.api("GET", "/v1/health/connect/" + service + "?passing");
  if (answer.status != 200) {
    return false;
  }
  return boost::json::parse(answer.body).as_array().size() == count;
}

}  // namespace coromesh::testing
