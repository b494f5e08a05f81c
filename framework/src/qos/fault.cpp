#include "coromesh/qos/fault.hpp"

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>
#include <system_error>

namespace coromesh::qos {

namespace {

FaultClass system_error_class(const boost::system::error_code& code) noexcept {
  if (code == boost::asio::error::operation_aborted) {
    return FaultClass::cancelled;
  }
  if (code == boost::asio::error::timed_out) {
    return FaultClass::timeout;
  }
  return FaultClass::transport;
}

}  // namespace

std::string_view to_string(FaultClass kind) noexcept {
  switch (kind) {
    case FaultClass::caller_error:
      return "caller_error";
    case FaultClass::callee_failure:
      return "callee_failure";
    case FaultClass::transport:
      return "transport";
    case FaultClass::timeout:
      return "timeout";
    case FaultClass::cancelled:
      return "cancelled";
    case FaultClass::rejected:
      return "rejected";
  }
  return "unknown";
}

FaultClassification classify_fault(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const QosRejected& rejected) {
    // Only a call cut off while it ran was slow; a spent deadline refused before the call
    // started is, like every other refusal, a local policy saying no.
    return {rejected.cut_off() ? FaultClass::timeout : FaultClass::rejected};
  } catch (const boost::system::system_error& e) {
    return {system_error_class(e.code())};
  } catch (const std::system_error& e) {
    return {e.code() == std::errc::operation_canceled ? FaultClass::cancelled
            : e.code() == std::errc::timed_out        ? FaultClass::timeout
                                                      : FaultClass::transport};
  } catch (...) {
    // A std::exception or anything else: the callee failed (a bug is not transient).
    return {FaultClass::callee_failure};
  }
}

Fault Fault::from(std::exception_ptr error, FaultClassifier classify) {
  Fault fault;
  fault.error = error;
  try {
    std::rethrow_exception(error);
  } catch (const QosRejected& rejected) {
    fault.reason = rejected.reason();
    fault.policy = rejected.policy();
    fault.notified_by = rejected.notified_by();
    fault.message = rejected.what();
  } catch (const std::exception& exception) {
    fault.message = exception.what();
  } catch (...) {
    fault.message = "unknown exception";
  }
  const FaultClassification classification =
      (classify != nullptr ? classify : classify_fault)(error);
  fault.kind = classification.kind;
  fault.status = classification.status;
  fault.not_delivered = classification.not_delivered;
  fault.callee_reason = classification.callee_reason;
  return fault;
}

}  // namespace coromesh::qos
