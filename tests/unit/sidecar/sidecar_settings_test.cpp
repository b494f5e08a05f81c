#include "src/sidecar_settings.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "coromesh/config/error.hpp"
#include "coromesh/config/option_set.hpp"
#include "test_env.hpp"

namespace coromesh::sidecar {
namespace {

using namespace std::chrono_literals;

SidecarSettings parse(const std::vector<std::string>& args) {
  SidecarSettings settings;
  config::OptionSet options("coromesh-sidecar", "test");
  declare_sidecar_settings(options, settings);
  options.parse(args, config::Environment::from({}));
  return settings;
}

TEST(SidecarSettings, ReadsTheStandaloneFormOfTheSeedsNomadJobs) {
  const auto s =
      parse({"--service", "add-svc", "--service-addr", "127.0.0.1:9001", "--listen", ":21000",
             "--register", "--upstream", "sub-svc:9192", "--upstream", "mul-svc:9193:http"});
  EXPECT_EQ(s.service, "add-svc");
  EXPECT_EQ(s.service_address, (config::Address{"127.0.0.1", 9001}));
  EXPECT_EQ(s.listen, (config::Address{"0.0.0.0", 21000})) << ":PORT is every interface";
  EXPECT_TRUE(s.register_proxy);
  EXPECT_EQ(s.upstreams, (std::vector<UpstreamSpec>{
                             {.service = "sub-svc", .port = 9192},
                             {.service = "mul-svc", .port = 9193, .mode = ListenerMode::http}}));
  EXPECT_EQ(s.proxy_id(), "add-svc-sidecar-proxy");
  EXPECT_EQ(s.proxy_name(), "add-svc-sidecar-proxy");
  EXPECT_NO_THROW(validate(s));
}

TEST(SidecarSettings, TakesConsulsSingleDashSpelling) {
  const auto s = parse({"-sidecar-for", "web-1"});
  EXPECT_EQ(s.sidecar_for, "web-1");
  EXPECT_EQ(s.proxy_id(), "web-1-sidecar-proxy");
  EXPECT_NO_THROW(validate(s));
}

// --upstream and --route-timeout are repeatable; every other flag given twice is refused
// (it used to take the last value), a switch and its --no- form included.
TEST(SidecarSettings, RefusesAFlagGivenTwiceUnlessItIsRepeatable) {
  const auto error = [](const std::vector<std::string>& args) -> std::string {
    try {
      parse(args);
    } catch (const config::ConfigError& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_EQ(error({"--service", "a", "--service", "b"}),
            "config error: --service (flag): --service is given more than once; give it once");
  EXPECT_EQ(error({"--listen=:1", "--listen=:2"}),
            "config error: --listen (flag): --listen is given more than once; give it once");
  EXPECT_EQ(error({"--register", "--no-register"}),
            "config error: --no-register (flag): --register (or --no-register) is given more "
            "than once; give it once");
  EXPECT_EQ(error({"-sidecar-for", "web-1", "--sidecar-for=web-2"}),
            "config error: --sidecar-for (flag): --sidecar-for is given more than once; give it "
            "once");
  const auto s = parse({"--upstream", "b:9000", "--upstream=c:9001", "--route-timeout", "/slow=5s",
                        "--route-timeout=/slower=10s"});
  EXPECT_EQ(s.upstreams.size(), 2u);
  EXPECT_EQ(s.route_timeouts.size(), 2u);
}

// A config file holds every upstream, one line each (it used to refuse the second).
TEST(SidecarSettings, AConfigFileListsSeveralUpstreams) {
  coromesh::testing::TempDir dir("sidecar-config");
  const auto path = (dir.path() / "sidecar.conf").string();
  std::ofstream(path) << "service = web\nupstream = db:9191\nupstream = cache:9192:http\n"
                         "route-timeout = /slow=5s\nroute-timeout = /slower=10s\n";
  const auto s = parse({"--config", path, "--upstream", "auth:9193"});
  EXPECT_EQ(s.upstreams, (std::vector<UpstreamSpec>{
                             {.service = "db", .port = 9191},
                             {.service = "cache", .port = 9192, .mode = ListenerMode::http},
                             {.service = "auth", .port = 9193}}))
      << "the file's upstreams, then the command line's";
  EXPECT_EQ(s.route_timeouts.size(), 2u);
  EXPECT_NO_THROW(validate(s));
  EXPECT_THROW(validate(parse({"--config", path, "--upstream", "db:9194"})), config::ConfigError)
      << "a flag naming a file's upstream again is refused, not a silent second listener";
  EXPECT_THROW(validate(parse({"--config", path, "--route-timeout", "/slow=1s"})),
               config::ConfigError)
      << "nor may a flag's timeout for a file's prefix quietly lose to it";
}

TEST(SidecarSettings, BoundsTheHandshakesInFlight) {
  EXPECT_EQ(parse({}).max_pending_handshakes, 1024u) << "the default";
  EXPECT_EQ(parse({"--max-pending-handshakes", "16"}).max_pending_handshakes, 16u);
  EXPECT_THROW(parse({"--max-pending-handshakes", "0"}), config::ConfigError)
      << "zero would shed every handshake";
  EXPECT_THROW(parse({"--max-pending-handshakes", "-1"}), config::ConfigError);
  EXPECT_THROW(parse({"--max-pending-handshakes", "lots"}), config::ConfigError);
}

TEST(SidecarSettings, RefusesBadUpstreamsAndIncompleteForms) {
  EXPECT_THROW(parse({"--upstream", "sub"}), config::ConfigError);
  EXPECT_THROW(parse({"--upstream", ":9000"}), config::ConfigError);
  EXPECT_THROW(parse({"--upstream", "sub:0"}), config::ConfigError);
  EXPECT_THROW(parse({"--upstream", "sub:9000:udp"}), config::ConfigError);
  EXPECT_THROW(validate(parse({})), config::ConfigError) << "neither form";
  EXPECT_THROW(validate(parse({"--service", "a", "--listen", ":1"})), config::ConfigError)
      << "no --service-addr";
  EXPECT_NO_THROW(validate(parse({"--service", "a", "--upstream", "b:9191"})))
      << "upstreams only, as consul connect proxy -service a -upstream b:9191";
  EXPECT_THROW(validate(parse({"--service", "a", "--upstream", "b:9191", "--register"})),
               config::ConfigError)
      << "nothing to register without a public listener";
  const std::vector<std::string> standalone{"--service",   "a",        "--service-addr",
                                            "127.0.0.1:1", "--listen", ":2"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), standalone.begin(), standalone.end());
    return parse(more);
  };
  EXPECT_NO_THROW(validate(with({"--upstream", "b:9000", "--upstream", "c:9001"})));
  EXPECT_THROW(validate(with({"--upstream", "b:9000", "--upstream", "b:9001:http"})),
               config::ConfigError)
      << "Consul refuses one destination twice";
  EXPECT_THROW(validate(with({"--upstream", "b:9000", "--upstream", "c:9000"})),
               config::ConfigError)
      << "one port, two listeners";
  EXPECT_NO_THROW(validate(with({"--register"}), true));
  EXPECT_NO_THROW(validate(with({}), false)) << "--no-consul-register alone: nothing registered";
  EXPECT_THROW(validate(with({"--register"}), false), config::ConfigError)
      << "--register with --no-consul-register: it used to register anyway";
  EXPECT_THROW(validate(parse({"-sidecar-for", "a-1", "--upstream", "b:1"})), config::ConfigError)
      << "both forms";
}

TEST(SidecarSettings, SidecarForTakesEverythingFromTheRegistration) {
  consul::AgentService registration{
      .id = "web-1-sidecar-proxy",
      .name = "web-sidecar-proxy",
      .port = 21000,
      .kind = "connect-proxy",
      .proxy = consul::ProxyConfig{
          .destination_service_name = "web",
          .destination_service_id = "web-1",
          .local_service_port = 8080,
          .upstreams = {{.destination_name = "db", .local_bind_port = 9191, .protocol = "http"}}}};
  SidecarSettings s;
  s.sidecar_for = "web-1";
  apply_registration(registration, s);
  EXPECT_EQ(s.service, "web");
  EXPECT_EQ(s.service_id, "web-1");
  EXPECT_EQ(s.service_address, (config::Address{"127.0.0.1", 8080}));
  EXPECT_EQ(s.listen, (config::Address{"0.0.0.0", 21000}));
  EXPECT_EQ(
      s.upstreams,
      (std::vector<UpstreamSpec>{{.service = "db", .port = 9191, .mode = ListenerMode::http}}));

  EXPECT_EQ(s.inbound_mode, ListenerMode::tcp);
  EXPECT_EQ(s.admin_port_from_registration, 0);

  // Proxy.Config: the public listener's protocol and the admin port.
  registration.proxy->config = {{"protocol", "http"}, {"coromesh_admin_port", "9102"}};
  apply_registration(registration, s);
  EXPECT_EQ(s.inbound_mode, ListenerMode::http);
  EXPECT_EQ(s.admin_port_from_registration, 9102);
  registration.proxy->config = {{"protocol", "grpc"}};
  apply_registration(registration, s);
  EXPECT_EQ(s.inbound_mode, ListenerMode::tcp) << "carried as bytes";
  registration.proxy->config = {{"coromesh_admin_port", "http"}};
  EXPECT_THROW(apply_registration(registration, s), config::ConfigError);

  registration.kind = "";
  EXPECT_THROW(apply_registration(registration, s), config::ConfigError);
}

// The sidecar's command line as its main() parses it: the framework's settings and its own.
std::string sidecar_start(const std::vector<std::string>& args,
                          std::map<std::string, std::string> env = {}) {
  SidecarSettings settings;
  std::vector<const char*> argv = {"coromesh-sidecar"};
  for (const auto& arg : args) {
    argv.push_back(arg.c_str());
  }
  std::ostringstream help;
  try {
    const auto config = config::parse_service_config(static_cast<int>(argv.size()), argv.data(),
                                                     config::Environment::from(std::move(env)),
                                                     sidecar_config_options(settings), help);
    if (!config) {
      return help.str();
    }
    return "mesh=" + std::string(config::to_string(config->mesh)) +
           " upstreams=" + std::to_string(settings.upstreams.size()) + "+" +
           std::to_string(config->upstreams.size());
  } catch (const config::ConfigError& e) {
    return e.what();
  }
}

// A service's --upstreams (operation=host:port), --mesh and --admin-port were offered by
// the sidecar's --help, next to its own --upstream. `--upstreams mod-svc:9191` was
// refused as "not name=host:port", `--upstreamz` suggested --upstreams, and --mesh=native
// (or COROMESH_MESH=native inherited from a shell) turned the admin port, which Consul's
// check and Prometheus reach in plain HTTP, into a Connect mTLS port.
TEST(SidecarSettings, OffersNoneOfAServicesMeshSettings) {
  EXPECT_EQ(sidecar_start({"--service", "web", "--upstreams", "mod-svc:9191"}),
            "config error: --upstreams (flag): unknown flag; did you mean --upstream? (--help "
            "lists all settings)");
  EXPECT_EQ(sidecar_start({"--service", "web", "--mesh=native"}),
            "config error: --mesh (flag): unknown flag (--help lists all settings)");
  EXPECT_EQ(sidecar_start({"--service", "web", "--admin-port=9100"}),
            "config error: --admin-port (flag): unknown flag (--help lists all settings)");
  // Its name is its service's (web-sidecar-proxy): a --name would be taken and ignored.
  EXPECT_EQ(sidecar_start({"--service", "web", "--name", "edge"}),
            "config error: --name (flag): unknown flag (--help lists all settings)");
  EXPECT_EQ(sidecar_start({"--service", "web", "--upstream", "mod-svc:9191"},
                          {{"COROMESH_MESH", "native"}, {"COROMESH_UPSTREAMS", "a=127.0.0.1:1"}}),
            "mesh=sidecar upstreams=1+0")
      << "a service's variables in the environment are not the sidecar's";
  const auto help = sidecar_start({"--help"});
  EXPECT_NE(help.find("--upstream=<name:port[:tcp|http]>"), std::string::npos) << help;
  EXPECT_NE(help.find("--balance="), std::string::npos) << help;
  for (const char* flag : {"--upstreams", "--mesh", "--admin-port", "--name="}) {
    EXPECT_EQ(help.find(flag), std::string::npos) << flag << " offered:\n" << help;
  }
}

TEST(SidecarSettings, RouteTimeoutsTakeTheLongestMatchingPrefix) {
  auto s = parse({"--service", "web", "--protocol", "http", "--http-timeout", "5s",
                  "--route-timeout", "/api=2s", "--route-timeout", "/api/v1/slow=200ms"});
  EXPECT_EQ(s.inbound_mode, ListenerMode::http);
  EXPECT_EQ(s.timeout_for("/api/v1/slow/x"), 200ms);
  EXPECT_EQ(s.timeout_for("/api/v1/fast"), 2s);
  EXPECT_EQ(s.timeout_for("/health"), 5s);
  EXPECT_THROW(parse({"--service", "web", "--route-timeout", "api=2s"}), config::ConfigError);
  EXPECT_THROW(parse({"--service", "web", "--route-timeout", "/api"}), config::ConfigError);
  EXPECT_THROW(parse({"--service", "web", "--route-timeout", "/api=0s"}), config::ConfigError);
  EXPECT_THROW(parse({"--service", "web", "--protocol", "udp"}), config::ConfigError);
  auto sidecar_for = parse({"-sidecar-for", "web-1", "--protocol", "http"});
  EXPECT_THROW(validate(sidecar_for), config::ConfigError) << "the registration says";
}

}  // namespace
}  // namespace coromesh::sidecar
