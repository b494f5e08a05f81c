// libFuzzer target for request binding (coromesh/http/binding.hpp): a query string or a
// JSON body, bound to described structs like the services' argument types. Whatever a
// client sends, binding yields a value or throws HttpError 400 with one of the binding
// codes and a short reason (values are clipped before they are echoed back); a value
// reads back unchanged from its own JSON and query forms. Anything else is a finding.
//
// The first byte picks the form (query or JSON) and the struct, the rest is the input.
// Long run: tests/fuzz/README.md.
#include <boost/describe.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/http/binding.hpp"

namespace fuzz {

// The calculator's operands: two int64 (every INT64_MIN/MAX edge goes through here).
struct Operands {
  std::int64_t l = 0;
  std::int64_t r = 0;
  friend bool operator==(const Operands&, const Operands&) = default;
};
BOOST_DESCRIBE_STRUCT(Operands, (), (l, r))

// hello-svc's argument: a string and an optional integer.
struct Greeting {
  std::string name;
  std::optional<std::int64_t> delay_ms;
  friend bool operator==(const Greeting&, const Greeting&) = default;
};
BOOST_DESCRIBE_STRUCT(Greeting, (), (name, delay_ms))

// Every other scalar kind, narrow integers included (range checks before narrowing).
struct Scalars {
  std::int32_t small = 0;
  std::uint16_t port = 0;
  std::uint64_t count = 0;
  double ratio = 0;
  bool flag = false;
  std::optional<std::string> label;
  friend bool operator==(const Scalars&, const Scalars&) = default;
};
BOOST_DESCRIBE_STRUCT(Scalars, (), (small, port, count, ratio, flag, label))

// JSON only: nesting and arrays.
struct Nested {
  Operands operands;
  std::vector<std::int64_t> values;
  std::optional<std::vector<Greeting>> greetings;
  friend bool operator==(const Nested&, const Nested&) = default;
};
BOOST_DESCRIBE_STRUCT(Nested, (), (operands, values, greetings))

}  // namespace fuzz

namespace {

namespace http = coromesh::http;

// Equal, except that a double read back from JSON may be one ulp off: Boost 1.81's JSON
// parser is not correctly rounded ("9.223378465203775E19", which it serialized itself,
// parses one ulp high; Boost 1.83 added number_precision::precise). Query strings go
// through std::from_chars and read back exactly.
template <class T>
bool reads_back_as(const T& read_back, const T& original) {
  return read_back == original;
}
bool reads_back_as(const fuzz::Scalars& read_back, const fuzz::Scalars& original) {
  auto same = read_back;
  if (std::nextafter(original.ratio, HUGE_VAL) == read_back.ratio ||
      std::nextafter(original.ratio, -HUGE_VAL) == read_back.ratio) {
    same.ratio = original.ratio;
  }
  return same == original;
}

void check(bool condition) {
  if (!condition) {
    std::abort();  // libFuzzer reports the input that got here
  }
}

// A refusal is a 400 with a binding code and a reason short enough to echo and log.
void check_refusal(const http::HttpError& error) {
  check(error.status() == http::Status::bad_request);
  check(error.code() == "missing_field" || error.code() == "invalid_field" ||
        error.code() == "invalid_json");
  check(!error.reason().empty() && error.reason().size() <= 512);
}

// Binding may refuse the input; reading back what it accepted must not fail: the
// read-backs run outside the try, where an HttpError is a finding (an accepted string
// that serializes to JSON the parser refuses, for one).
template <class T>
void bind_query_and_read_back(std::string_view query) {
  std::optional<T> value;
  try {
    value = http::bind_query<T>(query);
  } catch (const http::HttpError& error) {
    check_refusal(error);
    return;
  }
  check(http::bind_query<T>(http::to_query(*value)) == *value);
  check(reads_back_as(http::bind_json<T>(http::to_json(*value)), *value));
}

template <class T>
void bind_json_and_read_back(std::string_view body) {
  std::optional<T> value;
  try {
    value = http::bind_json<T>(body);
  } catch (const http::HttpError& error) {
    check_refusal(error);
    return;
  }
  check(reads_back_as(http::bind_json<T>(http::to_json(*value)), *value));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 7) {
    case 0:
      bind_query_and_read_back<fuzz::Operands>(input);
      break;
    case 1:
      bind_query_and_read_back<fuzz::Greeting>(input);
      break;
    case 2:
      bind_query_and_read_back<fuzz::Scalars>(input);
      break;
    case 3:
      bind_json_and_read_back<fuzz::Operands>(input);
      break;
    case 4:
      bind_json_and_read_back<fuzz::Greeting>(input);
      break;
    case 5:
      bind_json_and_read_back<fuzz::Scalars>(input);
      break;
    default:
      bind_json_and_read_back<fuzz::Nested>(input);
      break;
  }
  return 0;
}
