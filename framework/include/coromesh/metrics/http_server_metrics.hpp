#pragma once

// The HTTP server's RED metrics, one set per service:
//
//   coromesh_http_server_requests_total{service,operation,code}          counter
//   coromesh_http_server_request_duration_seconds{service,operation}     histogram
//   coromesh_http_server_requests_in_flight{service}                     gauge
//
// `code` is what the exchange came to, not only what the handler returned: a request
// whose client closed the connection (or stopped reading) before the answer reached it
// is counted as code="499" (nginx's "client closed request"; never sent on the wire),
// and one cut off by a drain whose grace ran out as code="503". A client that hangs up
// while the handler runs cancels it (http/server.hpp): its declared operation is then
// counted result="cancelled" by coromesh_qos_calls_total, beside this 499.
//
// Shaped for the request path: the router resolves an OperationMetrics once, when a
// route is registered, and each request then costs one atomic pointer load, one
// counter increment and one histogram observation. prometheus-cpp's Family::Add (a
// mutex plus a hash of every label) runs only the first time an operation sees a
// given status code.
//
// Ownership: HttpServerMetrics keeps the prometheus registry alive; the OperationMetrics
// it hands out live as long as it does (their addresses never change).
//
// Threads: every member may be called from any thread (all io threads observe
// concurrently). operation() takes a lock and belongs at start-up; observe() and the
// in-flight calls are lock-free apart from prometheus-cpp's per-histogram mutex.

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace coromesh::metrics {

class MetricsRegistry;

// The metrics of one operation (one route) of one service.
class OperationMetrics {
 public:
  OperationMetrics(const OperationMetrics&) = delete;
  OperationMetrics& operator=(const OperationMetrics&) = delete;

  // Counts one finished request with its response status and records its duration.
  // Codes 100..599 are cached after first use; anything else is counted as
  // code="other" so a misbehaving upstream cannot blow up label cardinality.
  // Negative or NaN durations are recorded as 0; +Inf in the +Inf bucket only, adding
  // nothing to the sum (which must stay finite to be of use).
  void observe(int status_code, double seconds);
  void observe(int status_code, std::chrono::steady_clock::duration elapsed) {
    observe(status_code, std::chrono::duration<double>(elapsed).count());
  }

  const std::string& name() const noexcept { return operation_; }

 private:
  friend class HttpServerMetrics;
  static constexpr int kFirstCachedCode = 100;
  static constexpr int kLastCachedCode = 599;

  OperationMetrics(prometheus::Family<prometheus::Counter>& requests,
                   prometheus::Histogram& duration, std::string service, std::string operation);
  prometheus::Counter& resolve_counter(int status_code);

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Histogram& duration_;
  std::string service_;
  std::string operation_;
  std::size_t bucket_count_;  // the histogram's buckets, +Inf included
  // Per-code counters, filled lazily. Racing fills are harmless: Family::Add returns the
  // same Counter for the same labels, so both writers store the same pointer.
  std::array<std::atomic<prometheus::Counter*>, kLastCachedCode - kFirstCachedCode + 1> by_code_{};
  std::atomic<prometheus::Counter*> other_code_{nullptr};
};

class HttpServerMetrics {
 public:
  // Upper bounds in seconds, 0.5ms .. 10s: loopback hops of a calculator are
  // sub-millisecond, a request that waits on a slow upstream is seconds.
  static std::vector<double> default_duration_buckets();

  // Registers (or, for a second service in the same registry, reuses) the three
  // families. `buckets` must be finite and strictly increasing (+Inf is always added).
  HttpServerMetrics(MetricsRegistry& registry, std::string service,
                    std::vector<double> buckets = default_duration_buckets());
  ~HttpServerMetrics();
  HttpServerMetrics(const HttpServerMetrics&) = delete;
  HttpServerMetrics& operator=(const HttpServerMetrics&) = delete;

  // The metrics of `name`, created on first use; the same object for the same name.
  OperationMetrics& operation(std::string_view name);

  void in_flight_inc();
  void in_flight_dec();

  // Counts a request as in flight for the guard's lifetime (e.g. a connection
  // coroutine's request scope); exception- and cancellation-safe.
  class InFlight {
   public:
    explicit InFlight(HttpServerMetrics& metrics) : metrics_(&metrics) {
      metrics_->in_flight_inc();
    }
    ~InFlight() { metrics_->in_flight_dec(); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    HttpServerMetrics* metrics_;
  };

  const std::string& service() const noexcept { return service_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;  // keeps the families below alive
  std::string service_;
  std::vector<double> buckets_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& durations_;
  prometheus::Gauge& in_flight_;
  std::mutex mutex_;  // guards operations_
  std::map<std::string, std::unique_ptr<OperationMetrics>, std::less<>> operations_;
};

}  // namespace coromesh::metrics
