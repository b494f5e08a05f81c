#include "coromesh/http/binding.hpp"

#include <boost/json/serialize.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "coromesh/http/router.hpp"
#include "json_body_parser.hpp"

namespace coromesh::http::binding_detail {
namespace {

// Values echoed back in error messages are clipped so a hostile client cannot make
// us build (and log) megabytes of text.
std::string clip(std::string_view text) {
  constexpr std::size_t kMax = 64;
  if (text.size() <= kMax) {
    return std::string(text);
  }
  return std::string(text.substr(0, kMax)) + "...";
}

template <class T>
bool parse_integer(std::string_view text, T& out, std::string& why) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec == std::errc::result_out_of_range) {
    why = "'" + clip(text) + "' is out of range";
    return false;
  }
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
    why = "'" + clip(text) + "' is not an integer";
    return false;
  }
  return true;
}

}  // namespace

namespace {

// The length of the well-formed UTF-8 sequence at text[i], or 0 when there is none. The
// range its second byte must fall in (Table 3-7 of the Unicode standard) rules out
// overlongs, surrogates and > U+10FFFF.
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept {
  const auto lead = static_cast<unsigned char>(text[i]);
  if (lead < 0x80) {
    return 1;
  }
  std::size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    low = lead == 0xE0 ? 0xA0 : 0x80;
    high = lead == 0xED ? 0x9F : 0xBF;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    low = lead == 0xF0 ? 0x90 : 0x80;
    high = lead == 0xF4 ? 0x8F : 0xBF;
  } else {
    return 0;
  }
  if (text.size() - i < length) {
    return 0;
  }
  for (std::size_t k = 1; k < length; ++k) {
    const auto byte = static_cast<unsigned char>(text[i + k]);
    const unsigned char min = k == 1 ? low : 0x80;
    const unsigned char max = k == 1 ? high : 0xBF;
    if (byte < min || byte > max) {
      return 0;
    }
  }
  return length;
}

}  // namespace

bool is_valid_utf8(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size();) {
    const auto length = utf8_sequence_length(text, i);
    if (length == 0) {
      return false;
    }
    i += length;
  }
  return true;
}

std::string to_valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto length = utf8_sequence_length(text, i);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      ++i;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  return out;
}

bool parse_scalar(std::string_view text, std::int64_t& out, std::string& why) {
  return parse_integer(text, out, why);
}
bool parse_scalar(std::string_view text, std::uint64_t& out, std::string& why) {
  if (!text.empty() && text.front() == '-') {
    why = "'" + clip(text) + "' must not be negative";
    return false;
  }
  return parse_integer(text, out, why);
}
bool parse_scalar(std::string_view text, double& out, std::string& why) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty() ||
      !std::isfinite(out)) {
    why = "'" + clip(text) + "' is not a finite number";
    return false;
  }
  return true;
}
bool parse_scalar(std::string_view text, bool& out, std::string& why) {
  if (text == "true" || text == "1") {
    out = true;
    return true;
  }
  if (text == "false" || text == "0") {
    out = false;
    return true;
  }
  why = "'" + clip(text) + "' is not a boolean (true/false or 1/0)";
  return false;
}

void append_query_param(std::string& out, std::string_view name, const boost::json::value& value) {
  auto encode = [&out](std::string_view text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : text) {
      const auto u = static_cast<unsigned char>(c);
      if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
        out += c;
      } else {
        out += '%';
        out += kHex[u >> 4U];
        out += kHex[u & 0xFU];
      }
    }
  };
  if (!out.empty()) {
    out += '&';
  }
  encode(name);
  out += '=';
  if (value.is_string()) {
    encode(std::string_view(value.get_string()));
  } else {
    encode(serialize_json(value));
  }
}

std::optional<std::string> query_value(std::string_view query, std::string_view name) {
  std::optional<std::string> found;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    auto eq = pair.find('=');
    std::string key;
    if (!percent_decode(pair.substr(0, eq), key, true)) {
      throw_invalid("query parameter", clip(pair.substr(0, eq)), "malformed percent-escape");
    }
    if (key != name) {
      continue;
    }
    // Refused rather than first (or last) wins: whatever checked the request before us (a
    // proxy, a WAF) may have read the other copy.
    if (found) {
      throw_invalid("query parameter", name, "given more than once");
    }
    std::string value;
    auto raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (!percent_decode(raw, value, true)) {
      throw_invalid("query parameter", name, "malformed percent-escape");
    }
    found = std::move(value);
  }
  return found;
}

void throw_missing(std::string_view where, std::string_view field) {
  throw HttpError(Status::bad_request, "missing_field",
                  std::string(where) + " '" + std::string(field) + "' is required");
}

void throw_invalid(std::string_view where, std::string_view field, std::string_view why) {
  throw HttpError(Status::bad_request, "invalid_field",
                  std::string(where) + " '" + std::string(field) + "': " + std::string(why));
}

void throw_invalid_json(std::string_view path, std::string_view why) {
  if (path.empty()) {
    throw HttpError(Status::bad_request, "invalid_field", "JSON body: " + std::string(why));
  }
  throw_invalid("JSON body field", path, why);
}

void json_to(const boost::json::value& v, const std::string& path, std::string& out) {
  if (!v.is_string()) {
    throw_invalid_json(path, "expected a string");
  }
  out = std::string(v.get_string());
}

void json_to(const boost::json::value& v, const std::string& path, bool& out) {
  if (!v.is_bool()) {
    throw_invalid_json(path, "expected true or false");
  }
  out = v.get_bool();
}

namespace {
// Boost.JSON holds an integer literal that fits neither int64 nor uint64
// (99999999999999999999) as a double. Such a value is a whole number of magnitude 2^63 or
// more: an integer the caller sent that is too large (as the query string says of the
// same digits), not a value that is no integer. A fraction, however large, is not one.
bool is_integer_past_64_bits(const boost::json::value& v) noexcept {
  if (!v.is_double()) {
    return false;
  }
  const double d = v.get_double();
  return std::isfinite(d) && std::trunc(d) == d && std::fabs(d) >= 0x1p63;
}
}  // namespace

void json_to(const boost::json::value& v, const std::string& path, std::int64_t& out) {
  if (v.is_int64()) {
    out = v.get_int64();
  } else if (v.is_uint64() || is_integer_past_64_bits(v)) {
    throw_invalid_json(path, "value is out of range");
  } else {
    throw_invalid_json(path, "expected an integer");
  }
}

void json_to(const boost::json::value& v, const std::string& path, std::uint64_t& out) {
  if (v.is_uint64()) {
    out = v.get_uint64();
  } else if (v.is_int64() && v.get_int64() >= 0) {
    out = static_cast<std::uint64_t>(v.get_int64());
  } else if (v.is_int64() || (is_integer_past_64_bits(v) && v.get_double() < 0)) {
    throw_invalid_json(path, "must not be negative");
  } else if (is_integer_past_64_bits(v)) {
    throw_invalid_json(path, "value is out of range");
  } else {
    throw_invalid_json(path, "expected an integer");
  }
}

void json_to(const boost::json::value& v, const std::string& path, double& out) {
  if (!v.is_number()) {
    throw_invalid_json(path, "expected a number");
  }
  // Boost 1.81's parser is not correctly rounded: a few doubles (e.g. 9.223378465203775E19)
  // come out one ulp off, so a double read from JSON may differ from from_chars's by that.
  out = v.to_number<double>();
  // Boost.JSON reads 1e999 as infinity; refused as in a query string, and because no
  // JSON answer could carry it back.
  if (!std::isfinite(out)) {
    throw_invalid_json(path, "expected a finite number");
  }
}

boost::json::value parse_json_body(std::string_view body) {
  // Deeply nested hostile input is refused, not recursed into.
  constexpr std::size_t kMaxDepth = 32;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    // Boost.JSON would say "incomplete JSON", which reads as a body cut short.
    throw HttpError(Status::bad_request, "invalid_json", "request body is empty: expected JSON");
  }
  auto parsed = parse_json_refusing_duplicate_keys(body, kMaxDepth);
  if (parsed.duplicate_key) {
    throw_invalid_json(clip(*parsed.duplicate_key), "given more than once");
  }
  if (parsed.error) {
    throw HttpError(Status::bad_request, "invalid_json",
                    "request body is not valid JSON: " + parsed.error.message());
  }
  return std::move(parsed.value);
}

double float_as_written(float value) noexcept {
  double wide = static_cast<double>(value);
  if (!std::isfinite(value)) {
    return wide;
  }
  char digits[32];
  const auto written = std::to_chars(digits, digits + sizeof digits, value);
  std::from_chars(digits, written.ptr, wide);  // the shortest float spelling, as a double
  return wide;
}

}  // namespace coromesh::http::binding_detail

namespace coromesh::http {
namespace {

bool holds_double(const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::double_:
      return true;
    case boost::json::kind::array:
      for (const auto& item : value.get_array()) {
        if (holds_double(item)) {
          return true;
        }
      }
      return false;
    case boost::json::kind::object:
      for (const auto& member : value.get_object()) {
        if (holds_double(member.value())) {
          return true;
        }
      }
      return false;
    default:
      return false;
  }
}

// Where a non-finite number sits, built while append_json unwinds ("lines[2].price").
struct NonFiniteNumber {
  double number = 0;
  std::string path;
};

// Boost.JSON writes every double in scientific notation (2.5 as 2.5E0, 100.0 as 1E2):
// valid JSON, but not what a reader of an answer expects. A finite double is written
// here as its shortest round-trip form (std::to_chars: 2.5, 0.1, 1e+300), with ".0"
// when that reads as an integer, so that it stays a double to whoever parses it. JSON has
// no spelling for infinity or NaN (Boost's Infinity and NaN are read by no parser):
// NonFiniteNumber, turned into std::invalid_argument by serialize_json.
void append_double(double number, std::string& out) {
  if (!std::isfinite(number)) {
    throw NonFiniteNumber{number, {}};
  }
  char digits[32];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, number);
  const std::string_view written(digits, static_cast<std::size_t>(end - digits));
  out += written;
  if (written.find_first_of(".e") == std::string_view::npos) {
    out += ".0";
  }
}

void append_json(const boost::json::value& value, std::string& out) {
  switch (value.kind()) {
    case boost::json::kind::double_:
      append_double(value.get_double(), out);
      return;
    case boost::json::kind::array: {
      out += '[';
      std::size_t index = 0;
      for (const auto& item : value.get_array()) {
        if (index != 0) {
          out += ',';
        }
        try {
          append_json(item, out);
        } catch (NonFiniteNumber& e) {
          const bool member = !e.path.empty() && e.path.front() != '[';
          e.path = "[" + std::to_string(index) + "]" + (member ? "." : "") + e.path;
          throw;
        }
        ++index;
      }
      out += ']';
      return;
    }
    case boost::json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& member : value.get_object()) {
        if (!std::exchange(first, false)) {
          out += ',';
        }
        out += boost::json::serialize(member.key());  // quoted and escaped
        out += ':';
        try {
          append_json(member.value(), out);
        } catch (NonFiniteNumber& e) {
          const bool nested = !e.path.empty() && e.path.front() != '[';
          e.path = std::string(member.key()) + (nested ? "." : "") + e.path;
          throw;
        }
      }
      out += '}';
      return;
    }
    default:
      out += boost::json::serialize(value);
  }
}

}  // namespace

std::string serialize_json(const boost::json::value& value) {
  if (!holds_double(value)) {
    return boost::json::serialize(value);  // the common case, one pass
  }
  std::string out;
  try {
    append_json(value, out);
  } catch (const NonFiniteNumber& e) {
    char spelled[8];
    const auto end = std::to_chars(spelled, spelled + sizeof spelled, e.number).ptr;
    throw std::invalid_argument("JSON cannot carry the non-finite number " +
                                std::string(spelled, static_cast<std::size_t>(end - spelled)) +
                                (e.path.empty() ? std::string() : " at '" + e.path + "'"));
  }
  return out;
}

}  // namespace coromesh::http
