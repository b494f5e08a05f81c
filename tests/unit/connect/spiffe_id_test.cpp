#include "coromesh/connect/spiffe_id.hpp"

#include <gtest/gtest.h>

#include <string>

namespace coromesh::connect {
namespace {

struct Accepted {
  const char* uri;
  SpiffeId expected;
};

TEST(SpiffeId, ParsesConnectServiceIdentities) {
  const Accepted cases[] = {
      {"spiffe://7f42f496-fbc7-8692-05ed-334aa5340c1e.consul/ns/default/dc/dc1/svc/web",
       {"7f42f496-fbc7-8692-05ed-334aa5340c1e.consul", "default", "dc1", "web"}},
      {"spiffe://t.consul/ns/team_a/dc/eu-west.1/svc/add-svc",
       {"t.consul", "team_a", "eu-west.1", "add-svc"}},
      // Before namespaces: no /ns/, read as "default".
      {"spiffe://t.consul/dc/dc1/svc/web", {"t.consul", "default", "dc1", "web"}},
      // Scheme and trust domain are case-insensitive (folded); the path is not.
      {"SPIFFE://T.Consul/ns/default/dc/DC1/svc/Web", {"t.consul", "default", "DC1", "Web"}},
  };
  for (const auto& c : cases) {
    auto parsed = parse_spiffe_id(c.uri);
    ASSERT_TRUE(parsed) << c.uri << ": " << parsed.error;
    EXPECT_EQ(*parsed.id, c.expected) << c.uri;
    EXPECT_TRUE(parsed.error.empty());
  }
}

TEST(SpiffeId, FormatsTheCanonicalUriThatParsesBack) {
  SpiffeId id{"t.consul", "default", "dc1", "web"};
  EXPECT_EQ(id.uri(), "spiffe://t.consul/ns/default/dc/dc1/svc/web");
  EXPECT_EQ(*parse_spiffe_id(id.uri()).id, id);
  auto legacy = parse_spiffe_id("spiffe://t.consul/dc/dc1/svc/web");
  EXPECT_EQ(legacy.id->uri(), "spiffe://t.consul/ns/default/dc/dc1/svc/web");
}

TEST(SpiffeId, ComparesTrustDomainsWithoutCase) {
  SpiffeId id{"abc.consul", "default", "dc1", "web"};
  EXPECT_TRUE(id.same_trust_domain("ABC.consul"));
  EXPECT_FALSE(id.same_trust_domain("abc.consul."));
  EXPECT_FALSE(id.same_trust_domain("abd.consul"));
  EXPECT_FALSE(id.same_trust_domain(""));
}

struct Refused {
  std::string uri;
  const char* because;  // a fragment of the error
};

TEST(SpiffeId, RefusesEverythingElseWithAReason) {
  const Refused cases[] = {
      {"", "not a spiffe:// URI"},
      {"spiffe:/t.consul/ns/default/dc/dc1/svc/web", "not a spiffe:// URI"},
      {"https://t.consul/ns/default/dc/dc1/svc/web", "not a spiffe:// URI"},
      {" spiffe://t.consul/ns/default/dc/dc1/svc/web", "not a spiffe:// URI"},
      {"spiffe://", "no trust domain"},
      {"spiffe:///ns/default/dc/dc1/svc/web", "no trust domain"},
      {"spiffe://t.consul", "no path"},
      {"spiffe://t.consul:8443/ns/default/dc/dc1/svc/web", "invalid trust domain"},
      {"spiffe://user@t.consul/ns/default/dc/dc1/svc/web", "invalid trust domain"},
      {"spiffe://t.consul/", "no path"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc/web/", "invalid path segment"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc//web", "invalid path segment"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc/web?x=1", "invalid path segment"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc/web#frag", "invalid path segment"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc/w%65b", "invalid path segment"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc/..", "invalid path segment"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc/we b", "invalid path segment"},
      {std::string("spiffe://t.consul/ns/default/dc/dc1/svc/web\0evil", 48),
       "invalid path segment"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc/web\n", "invalid path segment"},
      {"spiffe://t.consul/ns/default/dc/dc1", "not a Connect service identity"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc", "not a Connect service identity"},
      {"spiffe://t.consul/ns/default/dc/dc1/agent/client/dc/dc1/id/x",
       "not a Connect service identity"},
      {"spiffe://t.consul/agent/client/dc/dc1/id/node-1", "not a Connect service identity"},
      {"spiffe://t.consul/ap/part/ns/default/dc/dc1/svc/web", "not a Connect service identity"},
      {"spiffe://t.consul/ns/default/xx/dc1/svc/web", "not a Connect service identity"},
      {"spiffe://t.consul/ns/default/dc/dc1/gw/web", "not a Connect service identity"},
      {"spiffe://t.consul/dc/dc1/svc/web/extra/two", "not a Connect service identity"},
      {"spiffe://t.consul/NS/default/dc/dc1/svc/web", "not a Connect service identity"},
      {"spiffe://t.consul/ns/default/dc/dc1/svc/" + std::string(3000, 'a'), "longer than"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_spiffe_id(c.uri);
    EXPECT_FALSE(parsed) << c.uri;
    EXPECT_NE(parsed.error.find(c.because), std::string::npos)
        << c.uri << ": got '" << parsed.error << "'";
  }
}

}  // namespace
}  // namespace coromesh::connect
