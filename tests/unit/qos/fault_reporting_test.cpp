// Whose fault is it, as the metrics and the log say it: MetricsInterceptor's result and
// LogInterceptor's level and `fault=` field for every class of the table in qos/fault.hpp,
// through real chains with the service's classifier.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>
#include <functional>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "coromesh/http/client.hpp"
#include "coromesh/http/error.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/qos/interceptors.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/remote_error.hpp"
#include "run_awaitable.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using test_support::run;
using ::testing::HasSubstr;
using ::testing::Not;

using Thrower = std::function<void()>;

// What the observer was told, as the `result` label it becomes.
class RecordingObserver final : public CallObserver {
 public:
  void observe(Result result, Duration) noexcept override {
    results.emplace_back(kResultNames[static_cast<std::size_t>(result)]);
  }
  std::vector<std::string> results;
};

// Runs one call through `chain` that throws what `thrower` throws (or returns 1).
void run_call(const Chain<int>& chain, const Thrower& thrower) {
  asio::io_context io;
  try {
    (void)run(io, chain.execute([&thrower]() -> asio::awaitable<int> {
      thrower();
      co_return 1;
    }));
  } catch (...) {
  }
}

struct Case {
  const char* name;
  Thrower thrower;
  const char* result;  // the metric's `result` label
  const char* level;   // the log line's level
  const char* fault;   // the log line's `fault` (empty for ok)
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

std::vector<Case> cases() {
  using http::ClientErrc;
  using http::ClientError;
  using http::HttpError;
  using http::Status;
  return {
      {"ok", [] {}, "ok", "info", ""},
      // The caller's own fault: neither this process's nor its callee's failure.
      {"handler_400", [] { throw HttpError(Status::bad_request, "bad", "r is 0"); }, "caller_error",
       "info", "caller_error"},
      {"remote_422", [] { throw RemoteError(422, "division_by_zero", "7 / 0"); }, "caller_error",
       "info", "caller_error"},
      {"remote_503", [] { throw RemoteError(503, "overloaded", ""); }, "error", "warn",
       "callee_failure"},
      {"handler_bug", [] { throw std::logic_error("null pointer"); }, "error", "warn",
       "callee_failure"},
      {"connect_failed", [] { throw ClientError(ClientErrc::connect_failed, "upstream"); }, "error",
       "warn", "transport"},
      {"client_timeout", [] { throw ClientError(ClientErrc::timeout, "upstream"); }, "error",
       "warn", "timeout"},
      {"cancelled", [] { throw boost::system::system_error(asio::error::operation_aborted); },
       "cancelled", "info", "cancelled"},
      {"discovery_unavailable",
       [] { throw ClientError(ClientErrc::discovery_unavailable, "upstream"); }, "rejected", "warn",
       "rejected"},
      {"rate_limited", [] { throw QosRejected("rate_limit", Reason::rate_limited); }, "rejected",
       "warn", "rejected"},
      // The callee's rate limit refused: a refusal as our own, not the caller's error (was
      // caller_error, at info).
      {"remote_429",
       [] { throw RemoteError(429, "rate_limited", "qos policy 'rate_limit' rejected the call"); },
       "rejected", "warn", "rejected"},
  };
}

class FaultReporting : public ::testing::TestWithParam<Case> {};

TEST_P(FaultReporting, MetricsCountTheCallUnderItsClass) {
  const Case& c = GetParam();
  auto observer = std::make_shared<RecordingObserver>();
  const Chain<int> chain({std::make_shared<MetricsInterceptor>(observer)},
                         {.operation = "add", .classify = classify_service_fault});
  run_call(chain, c.thrower);
  EXPECT_THAT(observer->results, ::testing::ElementsAre(c.result));
}

TEST_P(FaultReporting, TheLogLineHasTheClassAtItsLevel) {
  const Case& c = GetParam();
  const Chain<int> chain({std::make_shared<LogInterceptor>()},
                         {.operation = "add", .classify = classify_service_fault});
  const auto previous = log::level();
  log::set_level(log::Level::info);
  ::testing::internal::CaptureStderr();
  run_call(chain, c.thrower);
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  const std::string out = ::testing::internal::GetCapturedStderr();
  log::set_level(previous);
  EXPECT_THAT(out, HasSubstr(std::string("level=") + c.level + " event=qos.call operation=add"));
  EXPECT_THAT(out, HasSubstr(std::string(" outcome=") + c.result));
  if (*c.fault != '\0') {
    EXPECT_THAT(out, HasSubstr(std::string(" fault=") + c.fault + " "));
  } else {
    EXPECT_THAT(out, Not(HasSubstr(" fault=")));
  }
}

INSTANTIATE_TEST_SUITE_P(EveryClass, FaultReporting, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// A caller's 4xx is not this process's failure: at log level warn, as services run, it
// writes nothing; the callee's failure still does.
TEST(FaultReportingLevels, ACallersErrorIsNotWrittenAtWarn) {
  const Chain<int> chain({std::make_shared<LogInterceptor>()},
                         {.operation = "add", .classify = classify_service_fault});
  const auto previous = log::level();
  log::set_level(log::Level::warn);
  ::testing::internal::CaptureStderr();
  run_call(chain, [] { throw RemoteError(422, "overflow", "too big"); });
  run_call(chain, [] { throw RemoteError(502, "bad_gateway", "its callee failed"); });
  coromesh::log::flush();
  const std::string out = ::testing::internal::GetCapturedStderr();
  log::set_level(previous);
  EXPECT_THAT(out, Not(HasSubstr("overflow")));
  EXPECT_THAT(out, HasSubstr("fault=callee_failure"));
}

// A fallback's value is not the callee's success: the default order puts log outside
// fallback, and its line said `outcome=ok` (at info, no fault) for a call whose callee
// failed every attempt. It says `outcome=fallback` with the fault the fallback answered,
// at that fault's level.
TEST(FaultReportingLevels, AFallbacksAnswerIsLoggedAsAFallbackWithItsFault) {
  const Chain<int> chain({std::make_shared<LogInterceptor>(),
                          std::make_shared<Fallback<int>>(Fallback<int>::value(0))},
                         {.operation = "add", .classify = classify_service_fault});
  const auto previous = log::level();
  log::set_level(log::Level::info);
  ::testing::internal::CaptureStderr();
  run_call(chain, [] { throw RemoteError(503, "overloaded", "its queue is full"); });
  run_call(chain, [] {});
  coromesh::log::flush();
  const std::string out = ::testing::internal::GetCapturedStderr();
  log::set_level(previous);
  EXPECT_THAT(out, HasSubstr("level=warn event=qos.call operation=add outcome=fallback "
                             "fault=callee_failure"));
  EXPECT_THAT(out, HasSubstr("overloaded"));
  // The call that succeeded is still ok, and only it.
  EXPECT_THAT(out, HasSubstr("level=info event=qos.call operation=add outcome=ok"));
  EXPECT_EQ(out.find("outcome=ok"), out.rfind("outcome=ok")) << out;
}

}  // namespace
}  // namespace coromesh::qos
