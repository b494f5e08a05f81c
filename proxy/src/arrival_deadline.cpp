#include "arrival_deadline.hpp"

#include <chrono>

#include "coromesh/qos/deadline.hpp"

namespace coromesh::sidecar {

ArrivalDeadline arrival_deadline(const http::Request& request, const SidecarSettings& settings,
                                 const ListenerMetrics& metrics) {
  ArrivalDeadline arrival{.forwarded = forwarded_deadline(
                              request, std::chrono::duration_cast<qos::Duration>(
                                           settings.timeout_for(target_path(request.target()))))};
  if (arrival.forwarded.spent_on_arrival) {
    const auto refusal = spent_deadline_refusal();
    metrics.count_refusal(refusal);
    arrival.refusal = refusal_response(refusal, request.version());
  }
  return arrival;
}

}  // namespace coromesh::sidecar
