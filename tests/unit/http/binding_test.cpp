#include "coromesh/http/binding.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace coromesh::http::testing_binding {

struct Operands {
  std::int64_t l = 0;
  std::int64_t r = 0;
};
BOOST_DESCRIBE_STRUCT(Operands, (), (l, r))

struct Options {
  std::string name;
  std::optional<int> limit;
  bool verbose = false;
  double ratio = 0;
  std::uint16_t port = 0;
};
BOOST_DESCRIBE_STRUCT(Options, (), (name, limit, verbose, ratio, port))

struct Order {
  std::string id;
  std::vector<Operands> lines;
  std::optional<Options> options;
};
BOOST_DESCRIBE_STRUCT(Order, (), (id, lines, options))

// Runs `f`, expects an HttpError 400 with `code`, returns its reason.
template <class F>
std::string reason_of(F f, const std::string& code) {
  try {
    f();
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), Status::bad_request);
    EXPECT_EQ(e.code(), code) << e.reason();
    return std::string(e.reason());
  }
  ADD_FAILURE() << "no HttpError thrown";
  return {};
}

TEST(BindQuery, BindsDescribedStruct) {
  auto ops = bind_query<Operands>("l=12&r=-6");
  EXPECT_EQ(ops.l, 12);
  EXPECT_EQ(ops.r, -6);
  auto opts = bind_query<Options>("name=a%20b+c&verbose=true&ratio=0.5&port=8080&extra=1");
  EXPECT_EQ(opts.name, "a b c");
  EXPECT_FALSE(opts.limit.has_value());
  EXPECT_TRUE(opts.verbose);
  EXPECT_DOUBLE_EQ(opts.ratio, 0.5);
  EXPECT_EQ(opts.port, 8080);
}

// 1 and 0 are booleans in a query string too; the refusal says so, or a caller told
// "(true/false)" would think the 1 it sent elsewhere was refused.
TEST(BindQuery, ABadBooleanNamesEverySpellingAccepted) {
  EXPECT_TRUE(bind_query<Options>("name=x&verbose=1&ratio=0&port=1").verbose);
  EXPECT_FALSE(bind_query<Options>("name=x&verbose=0&ratio=0&port=1").verbose);
  EXPECT_EQ(
      reason_of([] { bind_query<Options>("name=x&verbose=yes&ratio=0&port=1"); }, "invalid_field"),
      "query parameter 'verbose': 'yes' is not a boolean (true/false or 1/0)");
}

TEST(BindQuery, MissingFieldNamesIt) {
  auto reason = reason_of([] { bind_query<Operands>("l=1"); }, "missing_field");
  EXPECT_EQ(reason, "query parameter 'r' is required");
}

TEST(BindQuery, InvalidValuesNameTheFieldAndProblem) {
  EXPECT_EQ(reason_of([] { bind_query<Operands>("l=abc&r=1"); }, "invalid_field"),
            "query parameter 'l': 'abc' is not an integer");
  EXPECT_EQ(reason_of([] { bind_query<Operands>("l=1&r=99999999999999999999"); }, "invalid_field"),
            "query parameter 'r': '99999999999999999999' is out of range");
  EXPECT_EQ(reason_of([] { bind_query<Operands>("l=1.5&r=1"); }, "invalid_field"),
            "query parameter 'l': '1.5' is not an integer");
  EXPECT_EQ(reason_of([] { bind_query<Operands>("l=&r=1"); }, "invalid_field"),
            "query parameter 'l': '' is not an integer");
  EXPECT_EQ(reason_of([] { bind_query<Options>("name=x&verbose=1&ratio=1&port=70000"); },
                      "invalid_field"),
            "query parameter 'port': '70000' is out of range");
  EXPECT_EQ(
      reason_of([] { bind_query<Options>("name=x&verbose=1&ratio=1&port=-1"); }, "invalid_field"),
      "query parameter 'port': '-1' must not be negative");
  EXPECT_EQ(reason_of([] { bind_query<Options>("name=%zz"); }, "invalid_field"),
            "query parameter 'name': malformed percent-escape");
}

TEST(BindQuery, HostileLongValueIsClippedInTheReason) {
  std::string query = "l=" + std::string(10000, '9') + "x&r=1";
  auto reason = reason_of([&] { bind_query<Operands>(query); }, "invalid_field");
  EXPECT_LT(reason.size(), 200u);
}

// Found with hello-svc: `?name=%FF` came back as {"message":"hello, \xff"}, an answer no
// JSON parser accepts. A query string's text must be UTF-8 to bind to a string.
TEST(BindQuery, StringsMustBeValidUtf8) {
  for (const char* bad : {"%FF", "%C0%AF", "%ED%A0%80", "%F4%90%80%80", "a%E2%82", "%80"}) {
    auto reason =
        reason_of([&] { bind_query<Options>(std::string("name=") + bad); }, "invalid_field");
    EXPECT_EQ(reason, "query parameter 'name': not valid UTF-8") << bad;
  }
  EXPECT_EQ(bind_query<Options>("name=%E2%82%AC%F0%9F%98%80%C3%A9&verbose=1&ratio=0&port=1").name,
            "\u20ac\U0001F600\u00e9");
  EXPECT_TRUE(binding_detail::is_valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  EXPECT_FALSE(binding_detail::is_valid_utf8("\xF5\x80\x80\x80"));
}

// A parameter given twice is ambiguous: a proxy or WAF in front may have checked the other
// copy (HTTP parameter pollution). Taking the first silently was a choice nobody could see.
TEST(BindQuery, ADuplicatedParameterIsRefused) {
  EXPECT_EQ(reason_of([] { bind_query<Operands>("l=1&r=2&l=3"); }, "invalid_field"),
            "query parameter 'l': given more than once");
  // The same name however it is spelled on the wire.
  EXPECT_EQ(reason_of([] { bind_query<Operands>("l=1&r=2&%6C=3"); }, "invalid_field"),
            "query parameter 'l': given more than once");
  // Parameters the struct does not have are still ignored, repeated or not.
  EXPECT_EQ(bind_query<Operands>("x=1&l=4&x=2&r=5").r, 5);
}

struct Scaled {
  float factor = 0;
};
BOOST_DESCRIBE_STRUCT(Scaled, (), (factor))

// A double outside float's range became an infinite float (undefined by the standard,
// inf under IEEE 754), which a double member refuses and no JSON answer can carry.
TEST(BindQuery, AFloatOutOfItsRangeIsRefused) {
  EXPECT_EQ(reason_of([] { bind_query<Scaled>("factor=1e300"); }, "invalid_field"),
            "query parameter 'factor': '1e300' is out of range");
  EXPECT_EQ(reason_of([] { bind_json<Scaled>(R"({"factor":-1e300})"); }, "invalid_field"),
            "JSON body field 'factor': value is out of range");
  EXPECT_FLOAT_EQ(bind_query<Scaled>("factor=0.25").factor, 0.25F);
  EXPECT_FLOAT_EQ(bind_json<Scaled>(R"({"factor":-2.5})").factor, -2.5F);
}

// Found by fuzz.request_binding: Boost.JSON reads 1e316 as infinity, which bound to a
// double and then serialized to something no JSON parser reads back.
TEST(BindJson, NumbersMustBeFinite) {
  for (const char* huge : {"1e316", "-1e999"}) {
    auto reason = reason_of(
        [&] {
          bind_json<Options>(std::string(R"({"name":"n","verbose":true,"port":1,"ratio":)") + huge +
                             "}");
        },
        "invalid_field");
    EXPECT_EQ(reason, "JSON body field 'ratio': expected a finite number") << huge;
  }
}

TEST(BindJson, BindsNestedStructsVectorsAndOptionals) {
  auto order = bind_json<Order>(
      R"({"id":"o1","lines":[{"l":1,"r":2},{"l":3,"r":4}],"options":{"name":"n","verbose":true,"ratio":1,"port":1}})");
  EXPECT_EQ(order.id, "o1");
  ASSERT_EQ(order.lines.size(), 2u);
  EXPECT_EQ(order.lines[1].r, 4);
  ASSERT_TRUE(order.options.has_value());
  EXPECT_DOUBLE_EQ(order.options->ratio, 1.0);
}

// A body's errors say "JSON body", never "query parameter": the caller sent JSON.
TEST(BindJson, ErrorsNameTheBodyFieldPath) {
  EXPECT_EQ(reason_of([] { bind_json<Order>(R"({"lines":[]})"); }, "missing_field"),
            "JSON body field 'id' is required");
  EXPECT_EQ(reason_of([] { bind_json<Order>(R"({"id":"x","lines":[{"l":1,"r":"2"}]})"); },
                      "invalid_field"),
            "JSON body field 'lines[0].r': expected an integer");
  EXPECT_EQ(reason_of([] { bind_json<Order>(R"({"id":5,"lines":[]})"); }, "invalid_field"),
            "JSON body field 'id': expected a string");
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"([1,2])"); }, "invalid_field"),
            "JSON body: expected an object");
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":1,"r":18446744073709551615})"); },
                      "invalid_field"),
            "JSON body field 'r': value is out of range");
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":"x","r":1})"); }, "invalid_field"),
            "JSON body field 'l': expected an integer");
}

// An integer literal past 64 bits reaches the binding as a double (Boost.JSON keeps
// what it cannot hold as int64/uint64 that way): the caller sent an integer too large,
// as the query string's own error says, not something that is no integer.
TEST(BindJson, AnIntegerPast64BitsIsOutOfRangeNotANonInteger) {
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":1,"r":99999999999999999999})"); },
                      "invalid_field"),
            "JSON body field 'r': value is out of range");
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":-99999999999999999999,"r":1})"); },
                      "invalid_field"),
            "JSON body field 'l': value is out of range");
  EXPECT_EQ(reason_of(
                [] {
                  bind_json<Options>(R"({"name":"n","verbose":true,"ratio":1,)"
                                     R"("port":99999999999999999999})");
                },
                "invalid_field"),
            "JSON body field 'port': value is out of range");
  EXPECT_EQ(reason_of([] { bind_json<std::uint64_t>("-99999999999999999999"); }, "invalid_field"),
            "JSON body: must not be negative");
  // A fraction is still no integer, whatever its size.
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":1,"r":2.5})"); }, "invalid_field"),
            "JSON body field 'r': expected an integer");
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":1,"r":1.0})"); }, "invalid_field"),
            "JSON body field 'r': expected an integer");
}

// Boost.JSON keeps the last copy of a key given twice; as with a query parameter given
// twice, whatever read the body before us may have taken the other one.
TEST(BindJson, AKeyGivenTwiceInAnObjectIsRefused) {
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":1,"r":2,"l":40})"); }, "invalid_field"),
            "JSON body field 'l': given more than once");
  // The same key however it is escaped.
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":1,"r":2,"\u006c":40})"); }, "invalid_field"),
            "JSON body field 'l': given more than once");
  EXPECT_EQ(
      reason_of([] { bind_json<Order>(R"({"id":"o","lines":[{"l":1,"r":2},{"r":1,"r":2}]})"); },
                "invalid_field"),
      "JSON body field 'lines[1].r': given more than once");
  // In a member the struct does not have, too: the body is ambiguous either way.
  EXPECT_EQ(reason_of([] { bind_json<Operands>(R"({"l":1,"r":2,"x":[0,{"a":1,"a":2}]})"); },
                      "invalid_field"),
            "JSON body field 'x[1].a': given more than once");
  // A hostile key is clipped in the answer.
  const std::string long_key(5000, 'k');
  const auto body = R"({")" + long_key + R"(":1,")" + long_key + R"(":2})";
  EXPECT_LT(reason_of([&] { bind_json<Operands>(body); }, "invalid_field").size(), 200U);
  // The same key in different objects is no duplicate.
  const auto order = bind_json<Order>(R"({"id":"o","lines":[{"l":1,"r":2},{"l":3,"r":4}]})");
  ASSERT_EQ(order.lines.size(), 2U);
  EXPECT_EQ(order.lines[1].l, 3);
}

// The body is parsed in one pass that builds the value and checks keys as they come: it
// must build exactly what Boost.JSON's own parser builds, every kind of value included.
TEST(BindJson, TheOnePassParserBuildsWhatBoostJsonParses) {
  const std::vector<std::string> documents = {
      R"({"l":1,"r":-2})",
      R"({"s":"a\u0041\n\"q\"","e":"","k\u00e9y":"\ud83d\ude00"})",
      R"([0,-1,18446744073709551615,-9223372036854775808,1.5,-2.5e-3,1e300,true,false,null])",
      R"({"nested":{"a":[{"b":[[],{}]},[1,[2,[3]]]],"c":{"d":{"e":{}}}}})",
      R"(  "bare string"  )",
      "42",
      R"({"long":")" + std::string(40000, 'x') + R"(","n":)" + std::string(300, '9') + "}",
  };
  for (const auto& document : documents) {
    EXPECT_EQ(binding_detail::parse_json_body(document), boost::json::parse(document))
        << document.substr(0, 200);
  }
}

TEST(BindJson, MalformedAndHostileBodiesAreInvalidJson) {
  reason_of([] { bind_json<Operands>(R"({"l":1,)"); }, "invalid_json");
  // An empty body says so: Boost.JSON's own "incomplete JSON" reads as a body cut short.
  EXPECT_EQ(reason_of([] { bind_json<Operands>(""); }, "invalid_json"),
            "request body is empty: expected JSON");
  EXPECT_EQ(reason_of([] { bind_json<Operands>(" \r\n"); }, "invalid_json"),
            "request body is empty: expected JSON");
  // A whole value followed by more than whitespace.
  reason_of([] { bind_json<Operands>(R"({"l":1,"r":2} x)"); }, "invalid_json");
  reason_of([] { bind_json<Operands>(R"({"l":1,"r":2}{"l":3,"r":4})"); }, "invalid_json");
  EXPECT_EQ(bind_json<Operands>(" {\"l\":1,\"r\":2}\r\n\t ").r, 2);
  std::string deep(100000, '[');
  reason_of([&] { bind_json<Operands>(deep); }, "invalid_json");
}

TEST(ToJson, SerializesDescribedStructs) {
  Order order{"o1", {{1, 2}}, std::nullopt};
  EXPECT_EQ(to_json(order), R"({"id":"o1","lines":[{"l":1,"r":2}]})");
}

struct Prices {
  double unit = 0;
  std::vector<double> history;
  float discount = 0;
};
BOOST_DESCRIBE_STRUCT(Prices, (), (unit, history, discount))

// Boost.JSON alone writes 2.5 as 2.5E0 and 100.0 as 1E2: valid, but not what anyone
// reading an answer expects. Each double is its shortest round-trip form, and stays a
// double (100.0, not 100) for whoever parses it.
TEST(ToJson, WritesDoublesAsPeopleDo) {
  Prices prices{2.5, {100.0, 0.1, -0.0, 1e300, 1.5e-7, 123456789.125}, 0.1F};
  const auto text = to_json(prices);
  EXPECT_EQ(text, R"({"unit":2.5,"history":[100.0,0.1,-0.0,1e+300,1.5e-07,123456789.125],)"
                  R"("discount":0.1})");
  const auto parsed = boost::json::parse(text);
  EXPECT_TRUE(parsed.at("history").at(0).is_double());
  const auto back = bind_json<Prices>(text);
  EXPECT_EQ(back.unit, prices.unit);
  EXPECT_EQ(back.history, prices.history);
  EXPECT_EQ(back.discount, prices.discount) << "a float read back is the same float";
  // Strings beside them are still escaped as JSON needs.
  boost::json::value mixed = {{"q\"uote", 0.5}, {"n", nullptr}, {"s", "a\nb"}};
  EXPECT_EQ(serialize_json(mixed), R"({"q\"uote":0.5,"n":null,"s":"a\nb"})");
}

// JSON has no spelling for infinity or NaN: Boost.JSON writes them as Infinity, -Infinity
// and NaN, which no JSON parser reads (a caller took such an answer for the callee's
// invalid_response). Writing one is refused, naming where it is, so that a handler's
// result answers 500 and its log says why; a request argument is refused before it is
// sent. Reading one is refused already (BindJson.NumbersMustBeFinite).
TEST(ToJson, ANonFiniteNumberIsRefusedNamingWhereItIs) {
  const auto refusal = [](auto f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(nothing thrown)";
  };
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(refusal([&] {
              (void)to_json(Prices{inf, {}, 0});
            }),
            "JSON cannot carry the non-finite number inf at 'unit'");
  EXPECT_EQ(refusal([&] {
              (void)to_json(Prices{1, {2, std::nan("")}, 0});
            }),
            "JSON cannot carry the non-finite number nan at 'history[1]'");
  EXPECT_EQ(refusal([&] {
              (void)to_json(Prices{1, {}, -std::numeric_limits<float>::infinity()});
            }),
            "JSON cannot carry the non-finite number -inf at 'discount'");
  EXPECT_EQ(refusal([&] { (void)serialize_json(boost::json::value(-inf)); }),
            "JSON cannot carry the non-finite number -inf");
}

// What a served operation checks its result with inside its QoS chain: the same refusal
// as to_json's, and nothing for a value JSON can carry.
TEST(CheckSerializable, RefusesWhatToJsonRefusesAndPassesTheRest) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_NO_THROW(check_serializable(Prices{1, {2, 3}, 0.5F}));
  EXPECT_NO_THROW(check_serializable(std::string("inf")));
  EXPECT_NO_THROW(check_serializable(std::int64_t{7}));
  try {
    check_serializable(Prices{1, {2, std::nan("")}, 0});
    ADD_FAILURE() << "a NaN in a vector member passed";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "JSON cannot carry the non-finite number nan at 'history[1]'");
  }
  EXPECT_THROW(check_serializable(-inf), std::invalid_argument);
  EXPECT_THROW(check_serializable(std::numeric_limits<float>::quiet_NaN()), std::invalid_argument);
}

}  // namespace coromesh::http::testing_binding

namespace coromesh::http {
namespace {

using testing_binding::Operands;
using testing_binding::Options;

TEST(ToQuery, RoundTripsThroughBindQueryWithEscapesAndOptionals) {
  Options in{};
  in.name = "a b&c=d/é";
  in.limit = 42;
  const auto query = to_query(in);
  EXPECT_EQ(query.find(' '), std::string::npos);
  EXPECT_EQ(query.find("&c="), std::string::npos) << "an '&' inside a value must be escaped";
  const auto out = bind_query<Options>(query);
  EXPECT_EQ(out.name, in.name);
  EXPECT_EQ(out.limit, in.limit);
  EXPECT_EQ(out.ratio, in.ratio);
  in.limit.reset();
  EXPECT_EQ(to_query(in).find("limit="), std::string::npos) << "an empty optional is left out";
}

TEST(ToQuery, ADoubleIsWrittenAsPeopleWriteIt) {
  Options in{};
  in.ratio = 0.25;
  EXPECT_NE(to_query(in).find("ratio=0.25"), std::string::npos) << to_query(in);
  EXPECT_EQ(bind_query<Options>(to_query(in)).ratio, 0.25);
}

TEST(ToQuery, OperandsAreTheSeedsQuery) {
  EXPECT_EQ(to_query(Operands{1, -2}), "l=1&r=-2");
}

TEST(FromBody, ReadsABareNumberAStringAndAStruct) {
  EXPECT_EQ(from_body<std::int64_t>("3"), 3);
  EXPECT_EQ(from_body<std::string>("hello"), "hello");
  EXPECT_EQ(from_body<Operands>(R"({"l":1,"r":2})").r, 2);
  EXPECT_THROW(from_body<std::int64_t>("three"), HttpError);
}

}  // namespace
}  // namespace coromesh::http
