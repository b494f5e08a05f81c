#include "coromesh/config/service_config.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test_env.hpp"

namespace coromesh::config {
namespace {

using namespace std::chrono_literals;

struct Run {
  std::optional<ServiceConfig> config;
  std::string help;
};

Run run(std::vector<std::string> args, std::map<std::string, std::string> env = {},
        ServiceConfigOptions options = {.defaults = {.name = "add"}}) {
  std::vector<const char*> argv = {"/opt/coromesh/bin/add-svc"};
  for (const auto& arg : args) {
    argv.push_back(arg.c_str());
  }
  std::ostringstream help;
  auto config = parse_service_config(static_cast<int>(argv.size()), argv.data(),
                                     Environment::from(std::move(env)), options, help);
  return {std::move(config), help.str()};
}

std::string error(std::vector<std::string> args, std::map<std::string, std::string> env = {},
                  ServiceConfigOptions options = {.defaults = {.name = "add"}}) {
  try {
    run(std::move(args), std::move(env), std::move(options));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(ServiceConfig, DefaultsMatchTheDocumentedValues) {
  auto config = run({}).config.value();
  EXPECT_EQ(config.name, "add");
  EXPECT_EQ(config.instance_id, "");
  EXPECT_EQ(config.instance_id_for(41000), "add-41000");
  EXPECT_EQ(config.bind_address, "127.0.0.1");
  EXPECT_EQ(config.port, 0);
  EXPECT_EQ(config.advertised_address(), "127.0.0.1");
  EXPECT_EQ(config.io_threads, default_io_threads());
  EXPECT_GE(config.io_threads, 1u);
  EXPECT_EQ(config.consul, (Address{"127.0.0.1", 8500}));
  EXPECT_TRUE(config.consul_register);
  EXPECT_EQ(config.consul_token, "");
  EXPECT_TRUE(config.tags.empty());
  EXPECT_EQ(config.log_level, log::Level::info);
  EXPECT_EQ(config.http.max_header_bytes, 8u * 1024);
  EXPECT_EQ(config.http.max_body_bytes, 1024u * 1024);
  EXPECT_EQ(config.http.header_read_timeout, 10s);
  EXPECT_EQ(config.http.idle_timeout, 60s);
  EXPECT_EQ(config.http.max_connections, 10'000u);
  EXPECT_EQ(config.check_interval, 10s);
  EXPECT_EQ(config.consul_resync_interval, 5s);
  EXPECT_EQ(config.shutdown_grace, 10s);
  EXPECT_EQ(config.nomad_port_label, "http");
}

TEST(ServiceConfig, EverySettingHasAFlag) {
  auto config = run({"--name=mul",
                     "--instance-id=mul-a",
                     "--bind=0.0.0.0",
                     "--port=8081",
                     "--advertise=10.1.2.3",
                     "--threads=3",
                     "--consul=http://10.0.0.1:8501",
                     "--no-consul-register",
                     "--consul-token=tok",
                     "--tags=calc,v2",
                     "--log-level=debug",
                     "--http-max-header-bytes=16KiB",
                     "--http-max-body-bytes=2MiB",
                     "--http-header-timeout=5s",
                     "--http-idle-timeout=2m",
                     "--http-max-connections=50",
                     "--consul-check-interval=2s",
                     "--consul-resync-interval=250ms",
                     "--shutdown-grace=30s",
                     "--nomad-port-label=api"})
                    .config.value();
  EXPECT_EQ(config.name, "mul");
  EXPECT_EQ(config.instance_id_for(1), "mul-a");
  EXPECT_EQ(config.bind_address, "0.0.0.0");
  EXPECT_EQ(config.port, 8081);
  EXPECT_EQ(config.advertised_address(), "10.1.2.3");
  EXPECT_EQ(config.io_threads, 3u);
  EXPECT_EQ(config.consul, (Address{"10.0.0.1", 8501}));
  EXPECT_FALSE(config.consul_register);
  EXPECT_EQ(config.consul_token, "tok");
  EXPECT_EQ(config.tags, (std::vector<std::string>{"calc", "v2"}));
  EXPECT_EQ(config.log_level, log::Level::debug);
  EXPECT_EQ(config.http.max_header_bytes, 16u * 1024);
  EXPECT_EQ(config.http.max_body_bytes, 2u * 1024 * 1024);
  EXPECT_EQ(config.http.header_read_timeout, 5s);
  EXPECT_EQ(config.http.idle_timeout, 2min);
  EXPECT_EQ(config.http.max_connections, 50u);
  EXPECT_EQ(config.check_interval, 2s);
  EXPECT_EQ(config.consul_resync_interval, 250ms);
  EXPECT_EQ(config.shutdown_grace, 30s);
  EXPECT_EQ(config.nomad_port_label, "api");
}

TEST(ServiceConfig, ATokenFileWinsOverATokenFromALowerSourceOnly) {
  coromesh::testing::TempDir dir;
  const auto file = (dir.path() / "token").string();
  std::ofstream(file) << "file-secret\n";
  // The file, given as a flag, wins over an inherited CONSUL_HTTP_TOKEN...
  auto config =
      run({"--consul-token-file=" + file}, {{"CONSUL_HTTP_TOKEN", "env-secret"}}).config.value();
  EXPECT_EQ(config.consul_token_file, file);
  EXPECT_EQ(config.consul_token, "");
  // ...and a token flag wins over an inherited CONSUL_HTTP_TOKEN_FILE.
  config = run({"--consul-token=flag-secret"}, {{"CONSUL_HTTP_TOKEN_FILE", file}}).config.value();
  EXPECT_EQ(config.consul_token, "flag-secret");
  EXPECT_EQ(config.consul_token_file, "");
  // Both from the same source: which one was meant?
  const auto both = error({}, {{"CONSUL_HTTP_TOKEN_FILE", file}, {"CONSUL_HTTP_TOKEN", "s3cret"}});
  EXPECT_EQ(both,
            "config error: --consul-token-file (environment): give either a token or a token "
            "file, not both");
}

TEST(ServiceConfig, AnUnusableTokenFileStopsStartUpWithoutQuotingIt) {
  coromesh::testing::TempDir dir;
  const auto missing = (dir.path() / "missing").string();
  EXPECT_EQ(error({"--consul-token-file=" + missing}),
            "config error: --consul-token-file (flag): token file " + missing +
                ": No such file or directory");
  const auto bad = (dir.path() / "bad").string();
  std::ofstream(bad) << "part-of-a\x01secret";
  const auto message = error({}, {{"CONSUL_HTTP_TOKEN_FILE", bad}});
  EXPECT_NE(message.find("--consul-token-file (environment): token file " + bad), std::string::npos)
      << message;
  EXPECT_EQ(message.find("secret"), std::string::npos) << message;
}

TEST(ServiceConfig, WildcardBindAdvertisesNothingSoConsulUsesTheNodeAddress) {
  EXPECT_EQ(run({"--bind=0.0.0.0"}).config->advertised_address(), "");
  EXPECT_EQ(run({"--bind=::"}).config->advertised_address(), "");
}

TEST(ServiceConfig, ConsulsOwnEnvironmentVariablesAreHonoured) {
  auto config = run({}, {{"CONSUL_HTTP_ADDR", "127.0.0.1:18500"}, {"CONSUL_HTTP_TOKEN", "t1"}})
                    .config.value();
  EXPECT_EQ(config.consul, (Address{"127.0.0.1", 18500}));
  EXPECT_EQ(config.consul_token, "t1");
  auto ours = run({}, {{"CONSUL_HTTP_ADDR", "127.0.0.1:18500"},
                       {"COROMESH_CONSUL_ADDR", "127.0.0.1:28500"}})
                  .config.value();
  EXPECT_EQ(ours.consul.port, 28500) << "the coromesh variable is more specific";
  EXPECT_EQ(error({}, {{"CONSUL_HTTP_ADDR", "https://consul:8501"}}),
            "config error: CONSUL_HTTP_ADDR (environment): 'https://consul:8501' is not "
            "supported: only http:// Consul agents are");
}

// `export CONSUL_HTTP_ADDR=` or a compose file's `${PORT}` of an unset variable leaves a
// variable set to nothing: unset, as Consul's own tools, mod-svc and COROMESH_CONFIG take
// it, not a value that stops start-up or hides the next source.
TEST(ServiceConfig, AnEmptyEnvironmentVariableCountsAsUnset) {
  auto config = run({}, {{"CONSUL_HTTP_ADDR", ""}, {"COROMESH_LOG_LEVEL", ""}}).config.value();
  EXPECT_EQ(config.consul, (Address{"127.0.0.1", 8500}));
  auto next = run({}, {{"COROMESH_CONSUL_ADDR", ""}, {"CONSUL_HTTP_ADDR", "127.0.0.1:18500"}})
                  .config.value();
  EXPECT_EQ(next.consul.port, 18500);
  auto nomad = run({}, {{"COROMESH_PORT", ""}, {"NOMAD_PORT_http", "25123"}}).config.value();
  EXPECT_EQ(nomad.port, 25123);
}

TEST(ServiceConfig, NomadPortAndIpFillPortAndBind) {
  const std::map<std::string, std::string> env = {
      {"NOMAD_PORT_http", "25123"}, {"NOMAD_IP_http", "10.0.0.9"}, {"NOMAD_PORT_api", "25124"}};
  auto config = run({}, env).config.value();
  EXPECT_EQ(config.port, 25123);
  EXPECT_EQ(config.bind_address, "10.0.0.9");
  EXPECT_EQ(config.instance_id_for(config.port), "add-25123");

  auto relabelled = env;
  relabelled["COROMESH_NOMAD_PORT_LABEL"] = "api";
  EXPECT_EQ(run({}, relabelled).config->port, 25124) << "the label may come from the environment";
  EXPECT_EQ(run({"--nomad-port-label=api"}, env).config->port, 25124);
  EXPECT_EQ(run({"--port=80"}, env).config->port, 80);
}

TEST(ServiceConfig, ErrorsNameTheSetting) {
  EXPECT_EQ(error({"--port=abc"}),
            "config error: --port (flag): 'abc' is not a port number (0-65535)");
  EXPECT_EQ(error({}, {{"COROMESH_THREADS", "0"}}),
            "config error: COROMESH_THREADS (environment): '0' is out of range 1..256");
  EXPECT_EQ(error({"--log-level=verbose"}),
            "config error: --log-level (flag): 'verbose' is not a log level (debug, info, warn, "
            "error, off)");
  EXPECT_EQ(error({"--name=add svc"}),
            "config error: --name (flag): 'add svc' is not a service name (1-63 letters, digits "
            "and inner hyphens)");
  EXPECT_EQ(error({"--bind=localhost"}),
            "config error: --bind (flag): 'localhost' is not an IP address (e.g. 127.0.0.1, "
            "0.0.0.0, ::1)");
  EXPECT_EQ(error({"--http-max-header-bytes=10"}),
            "config error: --http-max-header-bytes (flag): '10' is out of range 1KiB..1MiB");
  EXPECT_EQ(error({"--nomad-port-label=a b"}),
            "config error: --nomad-port-label (flag): 'a b' is not a Nomad port label");
  EXPECT_EQ(error({"--instance-id=a/b"}),
            "config error: --instance-id (flag): 'a/b' is not an instance id (up to 128 letters, "
            "digits and - _ . :)");
}

TEST(ServiceConfig, ANameIsRequired) {
  EXPECT_EQ(error({}, {}, {}),
            "config error: --name (default): a service name is required (--name or "
            "COROMESH_SERVICE_NAME)");
  EXPECT_EQ(run({}, {{"COROMESH_SERVICE_NAME", "div"}}, {}).config->name, "div");
}

TEST(ServiceConfig, AServiceDeclaresItsOwnSettings) {
  std::int64_t max_operand = 1000;
  ServiceConfigOptions options{
      .defaults = {.name = "add"},
      .description = "Adds two integers.",
      .declare_extra = [&](OptionSet& set) {
        set.add_integer(
            max_operand,
            {.flag = "max-operand", .env = {"ADD_MAX_OPERAND"}, .help = "Largest operand."}, 0,
            1'000'000);
      }};
  run({"--max-operand=77"}, {}, options);
  EXPECT_EQ(max_operand, 77);
  EXPECT_EQ(error({"--max-operand=-1"}, {}, options),
            "config error: --max-operand (flag): '-1' is out of range 0..1000000");
  const auto help = run({"--help"}, {}, options).help;
  EXPECT_NE(help.find("--max-operand=<int>\n      Largest operand.\n      env: ADD_MAX_OPERAND; "
                      "default: 77"),
            std::string::npos)
      << help;
}

TEST(ServiceConfig, FileSettingsUseFlagNames) {
  coromesh::testing::TempDir dir("config");
  const auto path = (dir.path() / "add.conf").string();
  std::ofstream(path) << "# add-svc\nport = 8088\ntags = a, b\nhttp-idle-timeout = 90s\n";
  auto config = run({"--config", path}).config.value();
  EXPECT_EQ(config.port, 8088);
  EXPECT_EQ(config.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(config.http.idle_timeout, 90s);
}

TEST(ServiceConfig, HelpListsEverySettingWithEnvAndDefault) {
  auto result = run({"--help"});
  EXPECT_FALSE(result.config);
  const auto& help = result.help;
  EXPECT_NE(help.find("Usage: add-svc [--setting=value ...]"), std::string::npos) << help;
  for (const char* line : {"--name=<name>",
                           "env: COROMESH_SERVICE_NAME; default: add",
                           "env: COROMESH_INSTANCE_ID; default: <name>-<port>",
                           "env: COROMESH_BIND_ADDRESS, NOMAD_IP_http; default: 127.0.0.1",
                           "env: COROMESH_PORT, NOMAD_PORT_http; default: 0",
                           "env: COROMESH_ADVERTISE_ADDRESS; default: the bind address",
                           "env: COROMESH_THREADS; default: ",
                           "env: COROMESH_CONSUL_ADDR, CONSUL_HTTP_ADDR; default: 127.0.0.1:8500",
                           "--consul-register[=<bool>], --no-consul-register",
                           "env: COROMESH_CONSUL_REGISTER; default: true",
                           "env: COROMESH_CONSUL_TOKEN, CONSUL_HTTP_TOKEN; default: (none)",
                           "env: COROMESH_TAGS; default: (none)",
                           "env: COROMESH_LOG_LEVEL; default: info",
                           "env: COROMESH_HTTP_MAX_HEADER_BYTES; default: 8KiB",
                           "env: COROMESH_HTTP_MAX_BODY_BYTES; default: 1MiB",
                           "env: COROMESH_HTTP_HEADER_TIMEOUT; default: 10s",
                           "env: COROMESH_HTTP_IDLE_TIMEOUT; default: 1m",
                           "env: COROMESH_HTTP_MAX_CONNECTIONS; default: 10000",
                           "env: COROMESH_CONSUL_CHECK_INTERVAL; default: 10s",
                           "env: COROMESH_CONSUL_RESYNC_INTERVAL; default: 5s",
                           "env: COROMESH_SHUTDOWN_GRACE; default: 10s",
                           "env: COROMESH_NOMAD_PORT_LABEL; default: http",
                           "--config=<file>",
                           "--help, -h"}) {
    EXPECT_NE(help.find(line), std::string::npos) << "missing: " << line << "\n" << help;
  }
}

// Was: a flag given twice took its last value (`--port=1 --port=2` listened on 2) while
// a config file refused a repeated name. No service flag is repeatable: --upstreams and
// --tags take a list in one value.
TEST(ServiceConfig, AFlagGivenTwiceStopsStartUpNamingIt) {
  EXPECT_EQ(error({"--port=8081", "--port=8082"}),
            "config error: --port (flag): --port is given more than once; give it once");
  EXPECT_EQ(error({"--upstreams", "add=127.0.0.1:1", "--upstreams", "sub=127.0.0.1:2"}),
            "config error: --upstreams (flag): --upstreams is given more than once; give it "
            "once");
  EXPECT_EQ(error({"--no-consul-register", "--consul-register"}),
            "config error: --consul-register (flag): --consul-register (or "
            "--no-consul-register) is given more than once; give it once");
}

}  // namespace
}  // namespace coromesh::config

namespace coromesh::config {
namespace {

TEST(ServiceConfig, UpstreamsMapOperationsToAddresses) {
  auto config = run({"--upstreams=add=127.0.0.1:9191, sub=[::1]:9192"});
  ASSERT_TRUE(config.config);
  const auto& upstreams = config.config->upstreams;
  ASSERT_EQ(upstreams.size(), 2U);
  EXPECT_EQ(upstreams.at("add").to_string(), "127.0.0.1:9191");
  EXPECT_EQ(upstreams.at("sub").to_string(), "[::1]:9192");
  auto from_env = run({}, {{"COROMESH_UPSTREAMS", "mul=localhost:9193"}});
  EXPECT_EQ(from_env.config->upstreams.at("mul").port, 9193);
  EXPECT_TRUE(run({}).config->upstreams.empty());
}

TEST(ServiceConfig, MeshModeIsSidecarUnlessToldNative) {
  EXPECT_EQ(run({}).config->mesh, MeshMode::sidecar);
  EXPECT_EQ(run({"--mesh=native"}).config->mesh, MeshMode::native);
  EXPECT_EQ(run({}, {{"COROMESH_MESH", "native"}}).config->mesh, MeshMode::native);
  EXPECT_EQ(run({"--mesh=sidecar"}, {{"COROMESH_MESH", "native"}}).config->mesh, MeshMode::sidecar);
  EXPECT_EQ(run({"--admin-port=9100"}).config->admin_port, 9100);
  const auto refused = error({"--mesh=envoy"});
  EXPECT_NE(refused.find("--mesh"), std::string::npos) << refused;
  EXPECT_NE(refused.find("not a mesh mode (sidecar, native)"), std::string::npos) << refused;
}

// A program that is the mesh's plumbing (coromesh-sidecar) declares no mesh settings:
// neither offered by --help nor read from the flags, the environment or a file.
TEST(ServiceConfig, MeshSettingsCanBeLeftUndeclared) {
  const ServiceConfigOptions plumbing{.defaults = {.name = "proxy"}, .mesh_settings = false};
  const auto help = run({"--help"}, {}, plumbing).help;
  for (const char* flag : {"--upstreams", "--mesh", "--admin-port"}) {
    EXPECT_EQ(help.find(flag), std::string::npos) << flag << " offered:\n" << help;
  }
  EXPECT_NE(help.find("--balance"), std::string::npos) << help;
  EXPECT_EQ(error({"--mesh=native"}, {}, plumbing),
            "config error: --mesh (flag): unknown flag (--help lists all settings)");
  const auto config =
      run({}, {{"COROMESH_MESH", "native"}, {"COROMESH_UPSTREAMS", "a=127.0.0.1:1"}}, plumbing)
          .config.value();
  EXPECT_EQ(config.mesh, MeshMode::sidecar);
  EXPECT_TRUE(config.upstreams.empty());
  EXPECT_NE(run({"--help"}).help.find("--upstreams"), std::string::npos) << "a service has them";
}

TEST(ServiceConfig, BalanceIsRoundRobinUnlessToldOtherwise) {
  EXPECT_EQ(run({}).config->balance, "round_robin");
  EXPECT_EQ(run({"--balance=p2c_ewma"}).config->balance, "p2c_ewma");
  EXPECT_EQ(run({}, {{"COROMESH_BALANCE", "least_request"}}).config->balance, "least_request");
  const auto refused = error({"--balance=random"});
  EXPECT_NE(refused.find("--balance"), std::string::npos) << refused;
  EXPECT_NE(refused.find("not a balancing policy"), std::string::npos) << refused;
}

TEST(ServiceConfig, BadUpstreamsNameTheSettingAndTheProblem) {
  EXPECT_NE(error({"--upstreams=add"}).find("'add' is not name=host:port"), std::string::npos);
  EXPECT_NE(error({"--upstreams=add=127.0.0.1"}).find("--upstreams"), std::string::npos);
  EXPECT_NE(error({"--upstreams=a/b=127.0.0.1:1"}).find("'a/b' is not an operation name"),
            std::string::npos);
  EXPECT_NE(error({"--upstreams=add=127.0.0.1:1,add=127.0.0.1:2"}).find("given twice"),
            std::string::npos);
  EXPECT_NE(error({"--upstreams=add=127.0.0.1:0"}).find("--upstreams"), std::string::npos);
}

}  // namespace
}  // namespace coromesh::config
