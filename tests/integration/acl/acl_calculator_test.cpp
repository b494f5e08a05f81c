// The calculator on a locked-down Consul (ACLs, default deny, "*" -> "*" deny): every
// operator and the frontend behind a coromesh-sidecar holding only its own service's
// token, one allow per operator for the frontend.
//
//   frontend --op=127.0.0.1:U--> frontend sidecar ==mTLS==> <op> sidecar --> <op>-svc
//
// The operators' sidecars serve http mode (L7, as Consul advises for intentions): the seed's
// expression is answered; removing the frontend -> add allow makes additions fail with
// Consul's reason (add's sidecar answers 403 with it, the frontend passes it on, and logs
// it) while the other operators keep working.
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "calculator_processes.hpp"
#include "consul_acl.hpp"
#include "mesh_fixture.hpp"
#include "suite_setup.hpp"

namespace coromesh::testing {
namespace {

using calculator::testing::compute;
using calculator::testing::ServiceProcess;

constexpr const char* kMeshOperations[] = {"add", "sub", "mul", "div"};

class AclCalculator : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    coromesh::testing::suite_set_up_or_exit("AclCalculator", [] {
      dir_ = new TempDir("coromesh-acl-calculator");
      consul_ = new ConsulAgent({.acl = true});
      deny_all_intentions(*consul_);
      std::vector<std::string> frontend_args{"--service", "frontend"};
      std::string upstreams;
      for (const char* op : kMeshOperations) {
        set_intentions(*consul_, op, {{"frontend", "allow"}});
        const auto [public_port, upstream_port] = [] {
          const auto ports = free_ports(2);
          return std::pair{ports[0], ports[1]};
        }();
        // Intentions are checked when a connection is set up, as with Consul's own proxies:
        // a short idle timeout makes the frontend's next call after a pause a new one.
        operators_[op] = new ServiceProcess(std::string(op) + "-svc", dir_->path(),
                                            {"--http-idle-timeout=300ms"});
        sidecars_[op] = new SidecarProcess(
            *consul_, dir_->path(), std::string(op) + "-sidecar",
            {"--service", op, "--service-addr", operators_[op]->address(), "--listen",
             "127.0.0.1:" + std::to_string(public_port), "--register", "--consul-token-file",
             token_file(op), "--protocol", "http"});
        frontend_args.insert(frontend_args.end(),
                             {"--upstream", std::string(op) + ":" + std::to_string(upstream_port)});
        upstreams += std::string(op) + "=127.0.0.1:" + std::to_string(upstream_port) + ",";
      }
      frontend_args.insert(frontend_args.end(), {"--consul-token-file", token_file("frontend")});
      sidecars_["frontend"] =
          new SidecarProcess(*consul_, dir_->path(), "frontend-sidecar", frontend_args);
      mod_ = new ServiceProcess("mod-svc", dir_->path());  // % is not under test: called directly
      frontend_ = new ServiceProcess("frontend", dir_->path(),
                                     {"--upstreams=" + upstreams + "mod=" + mod_->address()});
      for (const char* op : kMeshOperations) {
        if (!wait_until([&] { return connect_endpoints_passing(*consul_, op, 1); }, 60s, 100ms)) {
          throw std::runtime_error(std::string(op) + "'s sidecar never passed its checks:\n" +
                                   sidecars_[op]->log_tail());
        }
      }
    });
  }

  static void TearDownTestSuite() {
    delete frontend_;
    delete mod_;
    for (auto& [name, sidecar] : sidecars_) {
      delete sidecar;
    }
    for (auto& [op, service] : operators_) {
      delete service;
    }
    delete consul_;
    delete dir_;
  }

  // A service-identity token for `service`, in a 0600 file; returns its path.
  static std::string token_file(const std::string& service) {
    const auto token = create_service_token(*consul_, service);
    secrets_.push_back(token.secret_id);
    const auto path = dir_->path() / (service + ".token");
    write_token_file(path, token.secret_id);
    return path.string();
  }

  static inline TempDir* dir_ = nullptr;
  static inline ConsulAgent* consul_ = nullptr;
  static inline std::map<std::string, ServiceProcess*> operators_;
  static inline std::map<std::string, SidecarProcess*> sidecars_;
  static inline ServiceProcess* mod_ = nullptr;
  static inline ServiceProcess* frontend_ = nullptr;
  static inline std::vector<std::string> secrets_;
};

TEST_F(AclCalculator, AnswersTheSeedsExpressionThroughTheLockedDownMesh) {
  const auto result = compute(*frontend_, "1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5");
  EXPECT_EQ(result.status, 200) << result.body << sidecars_["frontend"]->log_tail();
  EXPECT_EQ(result.body, R"({"result":9})");
}

TEST_F(AclCalculator, WithoutTheAddAllowAdditionsFailAndTheOtherOperatorsWork) {
  ASSERT_EQ(compute(*frontend_, "2+3").status, 200);
  ASSERT_EQ(consul_->api("DELETE", "/v1/config/service-intentions/add").status, 200);
  FetchResult refused;
  EXPECT_TRUE(wait_until(
      [&] {
        refused = compute(*frontend_, "2+3");
        return refused.status / 100 == 5;
      },
      20s, 600ms))
      << refused.status << " " << refused.body;
  std::cout << "addition without the allow: " << refused.status << " " << refused.body << "\n";
  // The frontend's dependency refused it: not the user's fault (5xx), and the user is told
  // whose refusal it was and Consul's reason.
  EXPECT_EQ(refused.status, 502) << refused.body;
  EXPECT_NE(refused.body.find(R"("error":"unauthorized")"), std::string::npos) << refused.body;
  EXPECT_NE(refused.body.find("add does not accept calls from frontend: Matched L4 intention: "
                              "default/* => default/*"),
            std::string::npos)
      << refused.body;
  const auto product = compute(*frontend_, "(8-2)*3/2");
  EXPECT_EQ(product.status, 200) << product.body;
  EXPECT_EQ(product.body, R"({"result":9})");
  // Consul's reason, in the log of add's sidecar (the log is written asynchronously).
  std::string log;
  EXPECT_TRUE(wait_until(
      [&] {
        log = read_file(sidecars_["add"]->process().log_file());
        return log.find("Matched L4 intention: default/* => default/*") != std::string::npos;
      },
      10s))
      << log;
  set_intentions(*consul_, "add", {{"frontend", "allow"}});
  EXPECT_TRUE(wait_until([&] { return compute(*frontend_, "2+3").status == 200; }, 20s, 600ms));
}

TEST_F(AclCalculator, NoTokenAppearsInAnyLogOrMetric) {
  std::string text = consul_->log_text();
  for (const auto& [name, sidecar] : sidecars_) {
    text += sidecar->metrics();
  }
  text += frontend_->get("/metrics").body;
  for (const auto& entry : std::filesystem::directory_iterator(dir_->path())) {
    if (entry.path().extension() == ".log") {
      text += read_file(entry.path());
    }
  }
  ASSERT_FALSE(secrets_.empty());
  for (const auto& secret : secrets_) {
    EXPECT_EQ(text.find(secret), std::string::npos) << "a token was printed";
  }
}

}  // namespace
}  // namespace coromesh::testing
