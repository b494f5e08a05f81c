#pragma once

// What an http-mode listener (the public one and each upstream's) does first with a
// request: the deadline it passes it on with, or, when the caller's deadline was spent
// as the request came, the refusal. One function for both listeners. Kept out of
// http_exchange.cpp, which the http fuzzer compiles on its own, without the sidecar's
// metrics.

#include <optional>

#include "coromesh/http/message.hpp"
#include "http_exchange.hpp"
#include "sidecar_metrics.hpp"
#include "sidecar_settings.hpp"

namespace coromesh::sidecar {

struct ArrivalDeadline {
  // The route's timeout (--route-timeout, else --http-timeout: the whole budget, retries
  // included), shortened by the caller's x-coromesh-deadline-ms.
  ForwardedDeadline forwarded;
  // Set when the caller's deadline was spent on arrival: the answer to send, nothing
  // tried. Counted already (ListenerMetrics::count_refusal: code="local",
  // fault="rejected", not the callee's timeout), and answered as a coromesh service
  // answers it (504 deadline_exceeded): the callee would refuse it too, and a client
  // that ended it unsent would call it the callee's timeout.
  std::optional<http::Response> refusal;
};

ArrivalDeadline arrival_deadline(const http::Request& request, const SidecarSettings& settings,
                                 const ListenerMetrics& metrics);

}  // namespace coromesh::sidecar
