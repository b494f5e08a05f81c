// The calculator end to end, as real processes on loopback: two instances of each
// operator service (mod-svc in Python among them), a frontend calling one instance of
// each directly (mod_svc_mesh_test.cpp goes through sidecars),
// and what a user sees: results, the documented errors, and a frontend that keeps
// serving after hostile input.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "calculator_processes.hpp"
#include "http_fetch.hpp"
#include "suite_setup.hpp"
#include "test_env.hpp"

namespace calculator::testing {
namespace {

const std::string kSeedExpression = "1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5";

class CalculatorEndToEndTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    coromesh::testing::suite_set_up_or_exit("CalculatorEndToEndTest", [] {
      dir_ = new coromesh::testing::TempDir("coromesh-calculator");
      operators_ = new OperatorInstances(dir_->path());
      frontend_ =
          new ServiceProcess("frontend", dir_->path(), {"--upstreams=" + operators_->upstreams()});
    });
  }
  static void TearDownTestSuite() {
    delete frontend_;
    delete operators_;
    delete dir_;
  }

  static coromesh::testing::TempDir* dir_;
  static OperatorInstances* operators_;
  static ServiceProcess* frontend_;
};

coromesh::testing::TempDir* CalculatorEndToEndTest::dir_ = nullptr;
OperatorInstances* CalculatorEndToEndTest::operators_ = nullptr;
ServiceProcess* CalculatorEndToEndTest::frontend_ = nullptr;

// The JSON error's fields, or a failure naming the body.
struct ErrorBody {
  std::string error;
  std::string reason;
};
ErrorBody error_of(const FetchResult& result) {
  const auto body = boost::json::parse(result.body).as_object();
  return {std::string(body.at("error").as_string()), std::string(body.at("reason").as_string())};
}

// "0+1+...+1" with `operations` additions: a chain of dependent calls.
std::string sum_of_ones(int operations) {
  std::string text = "0";
  for (int i = 0; i < operations; ++i) {
    text += "+1";
  }
  return text;
}

struct Computation {
  std::string expression;
  int status;
  std::string body_or_error;  // the 200 body, or the error code
  std::string reason = {};    // for errors: what the reason must contain
};

TEST_F(CalculatorEndToEndTest, ComputesTheTableOfExpressionsAndErrors) {
  const Computation table[] = {
      {kSeedExpression, 200, R"({"result":9})"},
      // One branch fails while the other's calls are in flight: they are cancelled, the
      // first failure is the answer, and the connections they used serve the next rows.
      {"(1/0)*((2+3)*(4+5)-(6*7))", 422, "division_by_zero", "operation div(1, 0) failed"},
      {"(1+2)*(3+4)", 200, R"({"result":21})"},
      {"2*3+4*5", 200, R"({"result":26})"},
      {"8-4-2", 200, R"({"result":2})"},
      {"-(-3)", 200, R"({"result":3})"},
      {" -7 / 2 ", 200, R"({"result":-3})"},
      {"-9223372036854775808", 200, R"({"result":-9223372036854775808})"},
      // % is mod-svc's (Python): C++'s sign, the dividend's; the same errors.
      {"17 % 5", 200, R"({"result":2})"},
      {"(7 % 3) * 4", 200, R"({"result":4})"},
      {"1 + 7 % 3 * 4", 200, R"({"result":5})"},
      {"-7 % 2", 200, R"({"result":-1})"},
      {"-9223372036854775808 % -1", 200, R"({"result":0})"},
      {"7 % (3 - 3)", 422, "division_by_zero",
       "operation mod(7, 0) failed: 7 % 0: division by zero"},
      {"7/(3-3)", 422, "division_by_zero", "operation div(7, 0) failed: 7 / 0: division by zero"},
      {"9223372036854775807+1", 422, "overflow", "operation add(9223372036854775807, 1) failed"},
      {"-9223372036854775808/-1", 422, "overflow", "operation div(-9223372036854775808, -1)"},
      {"-(-9223372036854775808)", 422, "overflow", "outside the 64-bit range"},
      {"1 + * 2", 400, "invalid_expression", "expected a number or '(' at position 5, found '*'"},
      {"(1+2", 400, "invalid_expression", "expected ')' at position 5"},
      {"", 400, "empty_expression", "the expression is empty"},
      {"9223372036854775808", 400, "literal_out_of_range", "at position 1"},
      {std::string(65, '(') + "1" + std::string(65, ')'), 400, "nesting_too_deep",
       "deeper than 64 levels"},
      {sum_of_ones(256), 200, R"({"result":256})"},
      {sum_of_ones(257), 400, "too_many_operations", "more than 256 operations"},
      {std::string(5000, '1'), 413, "expression_too_long", "at most 4096"},
  };
  for (const auto& row : table) {
    SCOPED_TRACE(row.expression.substr(0, 80));
    const FetchResult result = compute(*frontend_, row.expression);
    EXPECT_EQ(result.status, row.status) << result.body;
    if (row.status == 200) {
      EXPECT_EQ(result.body, row.body_or_error);
    } else {
      const ErrorBody error = error_of(result);
      EXPECT_EQ(error.error, row.body_or_error);
      EXPECT_NE(error.reason.find(row.reason), std::string::npos) << error.reason;
    }
  }
}

TEST_F(CalculatorEndToEndTest, AMissingExpressionIsRefusedNamingTheField) {
  const FetchResult result = frontend_->post("/api/v1/compute", "{}");
  EXPECT_EQ(result.status, 400);
  EXPECT_EQ(error_of(result).error, "missing_field");
  EXPECT_NE(error_of(result).reason.find("expression"), std::string::npos);
}

TEST_F(CalculatorEndToEndTest, EveryOperatorInstanceAnswersInTheSeedsFormat) {
  const std::pair<const char*, const char*> expected[] = {
      {"add", "13"}, {"sub", "-1"}, {"mul", "42"}, {"div", "0"}, {"mod", "6"}};
  for (const auto& [op, answer] : expected) {
    for (std::size_t i = 0; i < 2; ++i) {
      SCOPED_TRACE(std::string(op) + " instance " + std::to_string(i));
      const auto result = operators_->instance(op, i).get("/api/v1/execute?l=6&r=7");
      EXPECT_EQ(result.status, 200);
      EXPECT_EQ(result.body, answer);
    }
  }
}

TEST_F(CalculatorEndToEndTest, OperatorsRefuseBadOperandsAndUnrepresentableResults) {
  // div-svc (C++) and mod-svc (Python) answer alike.
  for (const char* op : {"div", "mod"}) {
    SCOPED_TRACE(op);
    auto& service = operators_->instance(op, 1);
    const auto missing = service.get("/api/v1/execute?l=1");
    EXPECT_EQ(missing.status, 400);
    EXPECT_EQ(error_of(missing).reason, "query parameter 'r' is required") << missing.body;
    const auto not_integer = service.get("/api/v1/execute?l=1.5&r=2");
    EXPECT_EQ(not_integer.status, 400);
    EXPECT_EQ(error_of(not_integer).reason, "query parameter 'l': '1.5' is not an integer");
    const auto too_big = service.get("/api/v1/execute?l=9223372036854775808&r=2");
    EXPECT_EQ(too_big.status, 400) << too_big.body;
    EXPECT_EQ(error_of(too_big).error, "invalid_field");
    const auto by_zero = service.get("/api/v1/execute?l=1&r=0");
    EXPECT_EQ(by_zero.status, 422);
    EXPECT_EQ(error_of(by_zero).error, "division_by_zero");
  }
  const auto overflow =
      operators_->instance("div", 1).get("/api/v1/execute?l=-9223372036854775808&r=-1");
  EXPECT_EQ(overflow.status, 422);
  EXPECT_EQ(error_of(overflow).error, "overflow");
  EXPECT_EQ(operators_->instance("mul", 0).get("/api/v1/execute?l=4294967296&r=4294967296").status,
            422);
}

TEST_F(CalculatorEndToEndTest, KeepsServingAfterHostileInput) {
  // A body past the server's limit, an expression past the length limit, nesting that
  // would overflow a recursive parser's stack, a 10k-digit literal, malformed JSON.
  // The server answers 413 as soon as it reads a Content-Length past its limit
  // (--http-max-body-bytes, 1 MiB) and closes, so a client still sending the body may see
  // the 413 or a reset connection: either way nothing was computed.
  const std::string huge_headers =
      "POST /api/v1/compute HTTP/1.1\r\nHost: frontend\r\nContent-Type: application/json\r\n"
      "Content-Length: 2000000000\r\n\r\n";
  EXPECT_EQ(coromesh::testing::raw_exchange("127.0.0.1", frontend_->port(), huge_headers)
                .rfind("HTTP/1.1 413", 0),
            0U);
  EXPECT_NE(frontend_->post("/api/v1/compute", std::string(2 * 1024 * 1024, '1')).status, 200);
  EXPECT_EQ(compute(*frontend_, std::string(500'000, '(') + "1" + std::string(500'000, ')')).status,
            413);
  EXPECT_EQ(compute(*frontend_, std::string(4000, '(') + "1" + std::string(4000, ')')).status, 413);
  EXPECT_EQ(compute(*frontend_, std::string(2000, '(') + "1" + std::string(2000, ')')).status, 400);
  EXPECT_EQ(compute(*frontend_, std::string(10'000, '7')).status, 413);
  EXPECT_EQ(compute(*frontend_, std::string(4000, '7')).status, 400);
  EXPECT_EQ(compute(*frontend_, std::string(4000, '-') + "1").status, 200);
  EXPECT_EQ(frontend_->post("/api/v1/compute", "{\"expression\": [").status, 400);
  EXPECT_EQ(frontend_->post("/api/v1/compute", "{\"expression\": 12}").status, 400);

  EXPECT_TRUE(frontend_->running()) << frontend_->log_tail();
  const FetchResult after = compute(*frontend_, kSeedExpression);
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(after.body, R"({"result":9})");
}

TEST_F(CalculatorEndToEndTest, IvtCountsItsCalls) {
  const auto first = frontend_->get("/ivt");
  const auto second = frontend_->get("/ivt");
  EXPECT_EQ(first.status, 200);
  ASSERT_EQ(first.body.rfind("ivt-test: ", 0), 0U) << first.body;
  const int n = std::stoi(first.body.substr(10));
  EXPECT_EQ(second.body, "ivt-test: " + std::to_string(n + 1));
}

// The lines of `log` that contain every one of `parts`.
std::vector<std::string> lines_with(const std::string& log, const std::vector<std::string>& parts) {
  std::vector<std::string> found;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    bool all = true;
    for (const auto& part : parts) {
      all = all && line.find(part) != std::string::npos;
    }
    if (all) {
      found.push_back(line);
    }
  }
  return found;
}

// Was: a 502/503/504 answer left no line in the frontend's log (it became an HttpError,
// which the server answers silently, and the operators' client chains declare no log
// policy), so an operator's failure was visible only to the user. Now each such answer
// is one warn line with the operation, the status, the fault's class and the reason:
// the framework's line for any 5xx a served operation answers (service.request_failed),
// not one of the frontend's own. The user's own errors (400, 422) are not this
// process's failures and write none.
TEST_F(CalculatorEndToEndTest, EveryGatewayErrorIsLoggedOnceWithItsFault) {
  const std::string nobody = "127.0.0.1:" + std::to_string(coromesh::testing::free_port());
  // A hung operator: the kernel accepts its connections (a listener never accepting),
  // nobody ever reads a request or answers one.
  boost::asio::io_context io;
  const boost::asio::ip::tcp::acceptor hung(
      io, {boost::asio::ip::make_address("127.0.0.1"), coromesh::testing::free_port()});
  ServiceProcess frontend(
      "frontend", dir_->path(),
      {"--upstreams=" +
       operators_->upstreams(
           {{"add", nobody},
            {"sub", "127.0.0.1:" + std::to_string(hung.local_endpoint().port())}})});
  EXPECT_EQ(compute(frontend, "1+2").status, 502);
  EXPECT_EQ(compute(frontend, "5-2").status, 504);  // each attempt meets its 1 s deadline
  EXPECT_EQ(compute(frontend, "7/0").status, 422);
  EXPECT_EQ(compute(frontend, "2*").status, 400);
  const std::string event = "event=service.request_failed operation=compute";
  std::string log;
  coromesh::testing::wait_until(
      [&] {
        log = frontend.log_tail(64 * 1024);
        return lines_with(log, {event, "status=504"}).size() == 1;
      },
      std::chrono::seconds(5));
  const auto refused = lines_with(log, {event, "status=502"});
  ASSERT_EQ(refused.size(), 1U) << log;
  EXPECT_NE(refused[0].find("level=warn"), std::string::npos) << refused[0];
  EXPECT_NE(refused[0].find("fault=transport error=upstream_unavailable "
                            "reason=\"operation add(1, 2) failed"),
            std::string::npos)
      << refused[0];
  const auto timed_out = lines_with(log, {event, "status=504"});
  ASSERT_EQ(timed_out.size(), 1U) << log;
  EXPECT_NE(timed_out[0].find("fault=timeout error=deadline_exceeded "
                              "reason=\"operation sub(5, 2) failed"),
            std::string::npos)
      << timed_out[0];
  EXPECT_EQ(lines_with(log, {event}).size(), 2U) << "a user's own error was logged:\n" << log;

  // add keeps failing until its breaker opens: the 503 that follows is the client's own
  // refusal, which its rejection hook logs (qos.rejected): not logged a second time.
  FetchResult refusal;
  for (int i = 0; i < 40 && refusal.status != 503; ++i) {
    refusal = compute(frontend, "1+2");
  }
  ASSERT_EQ(refusal.status, 503) << refusal.body;
  coromesh::testing::wait_until(
      [&] {
        log = frontend.log_tail(64 * 1024);
        return !lines_with(log,
                           {"event=qos.rejected operation=add side=client", "reason=circuit_open"})
                    .empty();
      },
      std::chrono::seconds(5));
  EXPECT_FALSE(
      lines_with(log, {"event=qos.rejected operation=add side=client", "reason=circuit_open"})
          .empty())
      << log;
  EXPECT_EQ(lines_with(log, {event, "status=503"}).size(), 0U) << log;
}

TEST_F(CalculatorEndToEndTest, AnUnreachableOperatorIsABadGatewayThenAnOpenCircuit) {
  // A second frontend whose div upstream is a port nobody listens on.
  const std::string nobody = "127.0.0.1:" + std::to_string(coromesh::testing::free_port());
  ServiceProcess frontend("frontend", dir_->path(),
                          {"--upstreams=" + operators_->upstreams({{"div", nobody}})});
  const FetchResult result = compute(frontend, "(8+0)/2");
  EXPECT_EQ(result.status, 502) << result.body;
  const ErrorBody error = error_of(result);
  EXPECT_EQ(error.error, "upstream_unavailable");
  EXPECT_NE(error.reason.find("operation div(8, 2) failed"), std::string::npos) << error.reason;
  // Every call keeps failing: the frontend's breaker for div opens (after 20 failed
  // attempts, calculator_api.hpp) and the user gets a 503 that says so, still naming the
  // operation, without a connection being tried.
  FetchResult rejected;
  for (int i = 0; i < 40 && rejected.status != 503; ++i) {
    rejected = compute(frontend, "(8+0)/2");
  }
  EXPECT_EQ(rejected.status, 503) << rejected.body;
  EXPECT_EQ(error_of(rejected).error, "circuit_open");
  EXPECT_NE(error_of(rejected).reason.find("operation div(8, 2) failed"), std::string::npos);
  // Each operation has its own breaker: those that are up still work.
  EXPECT_EQ(compute(frontend, "2*3+1").body, R"({"result":7})");
}

}  // namespace
}  // namespace calculator::testing
