#include "coromesh/connect/spiffe_id.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

namespace coromesh::connect {
namespace {

// Longer than any identity Consul writes, short enough that a hostile SAN costs nothing.
constexpr std::size_t kMaxUriLength = 2048;

char lower(char c) noexcept {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

// SPIFFE allows letters, digits, '.', '-' and '_' in a trust domain (lower case;
// upper case is folded, as a DNS name would be).
bool valid_trust_domain(std::string_view domain) noexcept {
  return !domain.empty() && std::all_of(domain.begin(), domain.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
  });
}

// Path segments: SPIFFE's unreserved set. No percent-encoding (Consul names never need
// it, and decoding would let two spellings name one identity), no "." or "..".
bool valid_segment(std::string_view segment) noexcept {
  if (segment.empty() || segment == "." || segment == "..") {
    return false;
  }
  return std::all_of(segment.begin(), segment.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
  });
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  while (!path.empty()) {
    auto slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) {
      break;
    }
    path.remove_prefix(slash + 1);
    if (path.empty()) {
      segments.emplace_back();  // a trailing slash: an empty last segment, refused below
    }
  }
  return segments;
}

SpiffeIdParse refuse(std::string why) {
  return {std::nullopt, std::move(why)};
}

}  // namespace

std::string SpiffeId::uri() const {
  return "spiffe://" + trust_domain + "/ns/" + ns + "/dc/" + datacenter + "/svc/" + service;
}

bool SpiffeId::same_trust_domain(std::string_view other) const noexcept {
  return std::equal(trust_domain.begin(), trust_domain.end(), other.begin(), other.end(),
                    [](char a, char b) { return lower(a) == lower(b); });
}

SpiffeIdParse parse_spiffe_id(std::string_view uri) {
  constexpr std::string_view kScheme = "spiffe://";
  if (uri.size() > kMaxUriLength) {
    return refuse("longer than " + std::to_string(kMaxUriLength) + " characters");
  }
  if (uri.size() < kScheme.size() || !std::equal(kScheme.begin(), kScheme.end(), uri.begin(),
                                                 [](char a, char b) { return a == lower(b); })) {
    return refuse("not a spiffe:// URI");
  }
  auto rest = uri.substr(kScheme.size());
  auto slash = rest.find('/');
  auto domain = rest.substr(0, slash);
  if (!valid_trust_domain(domain)) {
    return refuse(domain.empty() ? "no trust domain"
                                 : "invalid trust domain (a port, user or other character)");
  }
  if (slash == std::string_view::npos || slash + 1 == rest.size()) {
    return refuse("no path: a trust domain's own ID, not a service's");
  }
  auto segments = split_path(rest.substr(slash + 1));
  for (auto segment : segments) {
    if (!valid_segment(segment)) {
      return refuse("invalid path segment '" + std::string(segment.substr(0, 64)) + "'");
    }
  }
  SpiffeId id;
  std::transform(domain.begin(), domain.end(), std::back_inserter(id.trust_domain), lower);
  // ns/<ns>/dc/<dc>/svc/<svc>, or dc/<dc>/svc/<svc> from before namespaces.
  std::size_t at = 0;
  if (segments.size() == 6 && segments[0] == "ns") {
    id.ns = std::string(segments[1]);
    at = 2;
  } else if (segments.size() != 4) {
    return refuse("not a Connect service identity (expected /ns/<ns>/dc/<dc>/svc/<name>)");
  }
  if (segments[at] != "dc" || segments[at + 2] != "svc") {
    return refuse("not a Connect service identity (expected /ns/<ns>/dc/<dc>/svc/<name>)");
  }
  id.datacenter = std::string(segments[at + 1]);
  id.service = std::string(segments[at + 3]);
  return {std::move(id), {}};
}

}  // namespace coromesh::connect
