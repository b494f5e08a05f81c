#include "coromesh/service/fault_classifier.hpp"

#include "coromesh/http/client.hpp"
#include "coromesh/http/error.hpp"
#include "coromesh/service/remote_error.hpp"

namespace coromesh {

namespace {

qos::FaultClassification by_status(unsigned status) noexcept {
  const bool callers = status >= 400 && status < 500;
  return {callers ? qos::FaultClass::caller_error : qos::FaultClass::callee_failure, status};
}

}  // namespace

qos::FaultClassification classify_service_fault(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const http::HttpError& e) {
    return by_status(static_cast<unsigned>(e.status()));
  } catch (const RemoteError& e) {
    return by_status(e.status());
  } catch (const http::ClientError& e) {
    if (e.code() == http::ClientErrc::timeout) {
      return {qos::FaultClass::timeout};
    }
    if (e.code() == http::ClientErrc::bad_response) {
      return {qos::FaultClass::callee_failure};
    }
    return {qos::FaultClass::transport};
  } catch (...) {
    return qos::classify_fault(error);
  }
}

}  // namespace coromesh
