#pragma once

// The identity Consul Connect writes into every certificate's URI SAN:
//
//   spiffe://<trust-domain>/ns/<namespace>/dc/<datacenter>/svc/<service>
//
// and, from Consul versions before namespaces, the same without `/ns/<namespace>` (read
// as namespace "default"). Anything else is refused with a reason: a peer whose identity
// we cannot read is a peer we do not know. Plain values, no I/O: any thread.

#include <optional>
#include <string>
#include <string_view>

namespace coromesh::connect {

struct SpiffeId {
  std::string trust_domain;  // lower case, e.g. "7f42f496-….consul"
  std::string ns = "default";
  std::string datacenter;
  std::string service;

  // The canonical form, always with /ns/.
  std::string uri() const;
  // Trust domains compare without regard to case (DNS names), the rest exactly.
  bool same_trust_domain(std::string_view other) const noexcept;

  friend bool operator==(const SpiffeId&, const SpiffeId&) = default;
};

// The outcome of parse_spiffe_id: an id, or why there is none.
struct SpiffeIdParse {
  std::optional<SpiffeId> id;
  std::string error;  // empty when id is set

  explicit operator bool() const noexcept { return id.has_value(); }
};

SpiffeIdParse parse_spiffe_id(std::string_view uri);

}  // namespace coromesh::connect
