#pragma once

// A service's Connect TLS material, kept current: the leaf certificate of one service
// and the CA roots, both watched with blocking queries, turned into OpenSSL contexts
// (tls_contexts.hpp) that are swapped whenever either changes.
//
//   connect::CertificateSource certs(ex, agent, "web");
//   co_spawn(ex, certs.run(), bind_cancellation_slot(stop.slot(), detached));
//   co_await certs.ready();                   // the first leaf and roots arrived
//   auto ctx = certs.server_context();        // one per accepted connection
//
// Swapping: each change publishes a new immutable TlsMaterial (a new generation) under a
// mutex. A handshake takes the context current at its start and keeps it through its
// shared_ptr, so connections already open are never touched by a rotation, while every
// new one uses the new material at once.
//
// Failures: watch errors are retried with backoff (consul/watch.hpp); material OpenSSL
// refuses (a leaf whose key does not match, say) is logged and skipped. Either way the
// last good material stays published: an outage or a bad answer never takes the
// service's certificates away.
//
// Threads: run() and ready() run on `executor` (the AgentClient's); material(),
// server_context(), client_context(), leaf_expiry(), generation() and trust_domain() may
// be called from any thread.
//
// Lifetime: run() returns when its coroutine receives terminal cancellation (what the
// two-phase shutdown and `bind_cancellation_slot(stop.slot(), …)` + `stop.emit(terminal)`
// send), even mid blocking query; the published material
// stays readable afterwards. A run() that ends (stopped, or by an exception) before the
// first material was published makes every ready() waiting, and every later one, throw
// CertificateSourceStopped: nothing would fetch a certificate for them any more.
// Destroy the source only after run() has returned and no ready() is waiting; `consul`
// must outlive run().

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "coromesh/consul/agent_client.hpp"
#include "coromesh/consul/watch.hpp"

namespace coromesh::connect {

// One generation of TLS material: immutable, shared by everything that uses it.
struct TlsMaterial {
  std::uint64_t generation = 0;  // 1 for the first, +1 per change
  consul::CaRoots roots;
  std::string leaf_serial;
  std::string leaf_uri;  // our own SPIFFE ID
  std::chrono::system_clock::time_point leaf_valid_before;
  std::shared_ptr<boost::asio::ssl::context> server;
  std::shared_ptr<boost::asio::ssl::context> client;
};

// Thrown by ready() once run() has ended without a certificate: the source will never
// have one (a shutdown before Consul issued it, or run() failed; what() says which).
class CertificateSourceStopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CertificateSourceOptions {
  consul::WatchOptions watch;
};

class CertificateSource {
 public:
  CertificateSource(boost::asio::any_io_executor executor, consul::AgentClient& consul,
                    std::string service, CertificateSourceOptions options = {});
  CertificateSource(const CertificateSource&) = delete;
  CertificateSource& operator=(const CertificateSource&) = delete;
  ~CertificateSource();

  // Watches the leaf and the roots until cancelled. Call once.
  boost::asio::awaitable<void> run();
  // Returns once the first material is published (at once if it already is). Throws
  // boost::system::system_error(operation_aborted) if its own coroutine is cancelled first,
  // CertificateSourceStopped if run() has ended (or ends) before the first material.
  boost::asio::awaitable<void> ready();

  // The current material; nullptr before the first.
  std::shared_ptr<const TlsMaterial> material() const;
  // The current contexts; nullptr before the first material.
  std::shared_ptr<boost::asio::ssl::context> server_context() const;
  std::shared_ptr<boost::asio::ssl::context> client_context() const;
  // When the current leaf expires (a gauge's value); nullopt before the first material.
  std::optional<std::chrono::system_clock::time_point> leaf_expiry() const;
  // 0 before the first material.
  std::uint64_t generation() const noexcept { return generation_.load(); }
  // The roots' trust domain; empty before the first material.
  std::string trust_domain() const;

  const std::string& service() const noexcept { return service_; }

 private:
  void on_roots(const consul::CaRoots& roots);
  void on_leaf(const consul::LeafCertificate& leaf);
  // Builds and publishes new material from the latest leaf and roots, once both arrived.
  void rebuild();
  // run() has ended, for `why`: wakes ready() waiters, which then fail unless material
  // was published.
  void ended(std::string why);

  boost::asio::any_io_executor executor_;
  consul::AgentClient& consul_;
  std::string service_;
  CertificateSourceOptions options_;

  // The latest answers; touched only on the executor.
  std::optional<consul::CaRoots> roots_;
  std::optional<consul::LeafCertificate> leaf_;
  // Wakes ready() waiters: never expires by itself, cancelled on the first publication
  // and when run() ends.
  boost::asio::steady_timer first_material_;
  // Why run() ended ("stopped", or its exception); nullopt while it has not. Executor only.
  std::optional<std::string> ended_;

  mutable std::mutex mutex_;
  std::shared_ptr<const TlsMaterial> current_;  // guarded by mutex_
  std::atomic<std::uint64_t> generation_{0};
};

}  // namespace coromesh::connect
