// A Connect-native caller whose own leaf certificate is missing (its token may not fetch
// it) on an ACL-enabled Consul with default-deny intentions: its typed client waits for
// the leaf within the attempt's time, then fails with its own identity_unavailable, having
// picked and dialled no endpoint of the callee; once a rewritten token file brings the
// leaf, the same client calls through, no endpoint having been ejected for the caller's
// state. (The sidecar's counterpart: acl_mesh_test.cpp, ASidecarWithoutItsOwnLeaf...)
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <coromesh/metrics/registry.hpp>
#include <coromesh/service/discovered_upstream.hpp>
#include <coromesh/service/service.hpp>
#include <memory>
#include <string>

#include "consul_acl.hpp"
#include "mesh_fixture.hpp"
#include "mesh_test_services.hpp"

namespace coromesh::testing {
namespace {

using namespace std::chrono_literals;

class AclNativeLeaf : public ::testing::Test {
 protected:
  void TearDown() override {
    for (auto& service : services_) {
      service->request_shutdown();
      service->wait();
    }
  }

  // A native service of `name` whose Consul token is read from `token_file`.
  config::ServiceConfig native_config(const std::string& name,
                                      const std::filesystem::path& token_file) const {
    auto config = mesh_service_config(consul_, name, config::MeshMode::native);
    config.consul_token_file = token_file.string();
    return config;
  }

  ConsulAgent consul_{{.acl = true}};
  TempDir dir_{"coromesh-acl-native-leaf"};
  std::vector<std::unique_ptr<Service>> services_;
};

TEST_F(AclNativeLeaf, ACallerWithoutItsOwnLeafBlamesNoEndpointAndCallsOnceItComes) {
  deny_all_intentions(consul_);
  set_intentions(consul_, "whoami", {{"caller", "allow"}});
  const auto whoami_token = create_service_token(consul_, "whoami");
  const auto whoami_file = dir_.path() / "whoami.token";
  write_token_file(whoami_file, whoami_token.secret_id);
  services_.push_back(std::make_unique<Service>(native_config("whoami", whoami_file)));
  auto& callee = *services_.back();
  callee.serve(
      whoami,
      [&callee](WhoamiProbe, const CallContext& call) -> boost::asio::awaitable<WhoamiReply> {
        co_return WhoamiReply{callee.instance_id(), std::string(call.request->peer_identity)};
      });
  callee.start();
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 1); }, 30s));

  // whoami's token: it may read the catalog (discovery works) but not issue caller's leaf.
  const auto caller_file = dir_.path() / "caller.token";
  write_token_file(caller_file, whoami_token.secret_id);
  auto caller_config = native_config("caller", caller_file);
  caller_config.consul_register = false;
  services_.push_back(std::make_unique<Service>(caller_config));
  auto& caller = *services_.back();
  caller.start();
  auto& client = caller.client(whoami);
  // Were they held against the endpoint, 3 calls of 3 attempts each would eject it
  // (5 failures in a row).
  for (int i = 0; i < 3; ++i) {
    try {
      call_whoami(caller, client);
      FAIL() << "a call succeeded without the caller's own leaf";
    } catch (const http::ClientError& e) {
      EXPECT_EQ(e.code(), http::ClientErrc::identity_unavailable) << e.what();
      std::cout << "call " << i << ": " << e.what() << "\n";
    }
  }
  const auto upstream = client.transport().options().discovered;
  for (const auto& endpoint : upstream->endpoint_stats()) {
    EXPECT_EQ(endpoint.failures, 0u) << endpoint.key;
    EXPECT_FALSE(endpoint.ejected) << endpoint.key;
  }
  EXPECT_EQ(metric_sum(callee.metrics().render(), "coromesh_connect_native_handshakes_total", {}),
            0)
      << "the callee was dialled by a caller without a certificate";

  write_token_file(caller_file, create_service_token(consul_, "caller").secret_id);
  std::string last_error;
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          return call_whoami(caller, client).caller.ends_with("/svc/caller");
        } catch (const std::exception& e) {
          last_error = e.what();
          return false;
        }
      },
      60s, 200ms))
      << last_error;
  for (const auto& endpoint : upstream->endpoint_stats()) {
    EXPECT_FALSE(endpoint.ejected) << endpoint.key;
  }
}

}  // namespace
}  // namespace coromesh::testing
