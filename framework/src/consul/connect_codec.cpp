// The Connect shapes of the agent API: CA roots, leaf certificates, authorize. Declared
// in json_codec.hpp with the module's other codecs.

#include <boost/json/serialize.hpp>
#include <charconv>

#include "json_codec.hpp"
#include "json_fields.hpp"

namespace coromesh::consul::detail {
namespace {

using namespace json_fields;

// Reads `width` decimal digits at `pos`, advancing it.
int read_digits(std::string_view text, std::size_t& pos, std::size_t width) {
  if (pos + width > text.size()) {
    throw DecodeError("truncated timestamp '" + std::string(text) + "'");
  }
  int value = 0;
  for (std::size_t i = 0; i < width; ++i) {
    char c = text[pos + i];
    if (c < '0' || c > '9') {
      throw DecodeError("invalid timestamp '" + std::string(text) + "'");
    }
    value = value * 10 + (c - '0');
  }
  pos += width;
  return value;
}

void expect_char(std::string_view text, std::size_t& pos, char expected) {
  if (pos >= text.size() || text[pos] != expected) {
    throw DecodeError("invalid timestamp '" + std::string(text) + "'");
  }
  ++pos;
}

std::chrono::system_clock::time_point time_field(const json::object& object, std::string_view key) {
  return parse_rfc3339(required_string(object, key));
}

}  // namespace

std::chrono::system_clock::time_point parse_rfc3339(std::string_view text) {
  using namespace std::chrono;
  std::size_t pos = 0;
  int year = read_digits(text, pos, 4);
  expect_char(text, pos, '-');
  int month = read_digits(text, pos, 2);
  expect_char(text, pos, '-');
  int day = read_digits(text, pos, 2);
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't')) {
    throw DecodeError("invalid timestamp '" + std::string(text) + "'");
  }
  ++pos;
  int hour = read_digits(text, pos, 2);
  expect_char(text, pos, ':');
  int minute = read_digits(text, pos, 2);
  expect_char(text, pos, ':');
  int second = read_digits(text, pos, 2);
  year_month_day date{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                      std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok() || hour > 23 || minute > 59 || second > 60) {
    throw DecodeError("timestamp out of range '" + std::string(text) + "'");
  }
  nanoseconds fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    std::int64_t scale = 100'000'000;
    std::size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      fraction += nanoseconds((text[pos] - '0') * scale);
      scale /= 10;
      ++pos;
      ++digits;
    }
    if (digits == 0 || digits > 9) {
      throw DecodeError("invalid fraction of a second in '" + std::string(text) + "'");
    }
  }
  minutes offset{0};
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int offset_hours = read_digits(text, pos, 2);
    expect_char(text, pos, ':');
    int offset_minutes = read_digits(text, pos, 2);
    if (offset_hours > 23 || offset_minutes > 59) {
      throw DecodeError("timestamp offset out of range '" + std::string(text) + "'");
    }
    offset = minutes(sign * (offset_hours * 60 + offset_minutes));
  } else {
    throw DecodeError("timestamp without a zone '" + std::string(text) + "'");
  }
  if (pos != text.size()) {
    throw DecodeError("trailing characters in timestamp '" + std::string(text) + "'");
  }
  // Go writes any year from 0000 to 9999; system_clock (nanoseconds since 1970) holds
  // only 1678 to 2262. Counted in seconds first, where every 4-digit year fits, and
  // refused outside that range instead of overflowing.
  const auto utc = sys_days(date) + hours(hour) + minutes(minute) + seconds(second) - offset;
  constexpr auto kEarliest = ceil<seconds>(system_clock::time_point::min().time_since_epoch());
  constexpr auto kLatest = floor<seconds>(system_clock::time_point::max().time_since_epoch()) -
                           seconds(1);  // room for the fraction
  if (utc.time_since_epoch() < kEarliest || utc.time_since_epoch() > kLatest) {
    throw DecodeError("timestamp out of range '" + std::string(text) + "'");
  }
  return time_point_cast<system_clock::duration>(utc) +
         duration_cast<system_clock::duration>(fraction);
}

CaRoots decode_ca_roots(std::string_view body) {
  auto value = parse(body);
  const auto& object = as_object(value, "CA roots answer");
  CaRoots roots;
  roots.trust_domain = required_string(object, "TrustDomain");
  roots.active_root_id = string_field(object, "ActiveRootID");
  const auto* list = object.if_contains("Roots");
  if (list == nullptr || list->is_null()) {
    throw DecodeError("CA roots answer lacks Roots");
  }
  for (const auto& item : as_array(*list, "Roots")) {
    const auto& entry = as_object(item, "root");
    CaRoot root;
    root.id = required_string(entry, "ID");
    root.name = string_field(entry, "Name");
    root.root_cert_pem = required_string(entry, "RootCert");
    root.active = bool_field(entry, "Active");
    roots.roots.push_back(std::move(root));
  }
  if (roots.roots.empty()) {
    throw DecodeError("CA roots answer lists no root");
  }
  return roots;
}

LeafCertificate decode_leaf_certificate(std::string_view body) {
  auto value = parse(body);
  const auto& object = as_object(value, "leaf certificate");
  LeafCertificate leaf;
  leaf.serial_number = required_string(object, "SerialNumber");
  leaf.cert_pem = required_string(object, "CertPEM");
  leaf.private_key_pem = required_string(object, "PrivateKeyPEM");
  leaf.service = required_string(object, "Service");
  leaf.service_uri = required_string(object, "ServiceURI");
  leaf.valid_after = time_field(object, "ValidAfter");
  leaf.valid_before = time_field(object, "ValidBefore");
  if (leaf.valid_before <= leaf.valid_after) {
    throw DecodeError("leaf certificate's ValidBefore is not after its ValidAfter");
  }
  return leaf;
}

std::string encode_authorize_request(std::string_view target, std::string_view client_cert_uri,
                                     std::string_view client_cert_serial) {
  json::object out;
  out["Target"] = target;
  out["ClientCertURI"] = client_cert_uri;
  out["ClientCertSerial"] = client_cert_serial;
  return json::serialize(out);
}

AuthorizeResult decode_authorize_result(std::string_view body) {
  auto value = parse(body);
  const auto& object = as_object(value, "authorize answer");
  const auto* authorized = object.if_contains("Authorized");
  if (authorized == nullptr || !authorized->is_bool()) {
    // Absent must not read as "false" silently, nor as "true" ever: refuse the answer.
    throw DecodeError("authorize answer lacks a boolean Authorized");
  }
  return {.authorized = authorized->get_bool(), .reason = string_field(object, "Reason")};
}

}  // namespace coromesh::consul::detail
