#include "coromesh/config/option_set.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "option_set_fixture.hpp"

namespace coromesh::config {
namespace {

using testing::Fixture;
using testing::write_file;
using namespace std::chrono_literals;

TEST(OptionSet, DefaultsAreTheBoundValues) {
  Fixture f;
  EXPECT_EQ(f.parse({}), ParseStatus::ok);
  EXPECT_EQ(f.port, 0);
  EXPECT_EQ(f.threads, 4);
  EXPECT_EQ(f.timeout, 10s);
  EXPECT_EQ(f.options.source_of("port"), Source::default_value);
  EXPECT_EQ(f.options.source_of("nope"), std::nullopt);
}

TEST(OptionSet, ReadsGoStyleSingleDashFlagsForDeclaredSettings) {
  Fixture f;
  EXPECT_EQ(f.parse({"-port", "8080", "-name=calc", "-verbose"}), ParseStatus::ok);
  EXPECT_EQ(f.port, 8080);
  EXPECT_EQ(f.name, "calc");
  EXPECT_TRUE(f.verbose);
  EXPECT_EQ(f.options.source_of("port"), Source::flag);
  EXPECT_THROW(f.parse({"-nope", "1"}), ConfigError) << "unknown names are still refused";
}

TEST(OptionSet, ReadsBothFlagFormsAndEveryType) {
  Fixture f;
  f.parse({"--port=8080", "--threads", "8", "--verbose", "--timeout=250ms", "--max-body", "64KiB",
           "--name=calc", "--token", "s3cret", "--upstream=[::1]:9000", "--bind",
           "::", "--tags=a, b"});
  EXPECT_EQ(f.port, 8080);
  EXPECT_EQ(f.threads, 8);
  EXPECT_TRUE(f.verbose);
  EXPECT_EQ(f.timeout, 250ms);
  EXPECT_EQ(f.max_body, 64u * 1024);
  EXPECT_EQ(f.name, "calc");
  EXPECT_EQ(f.token, "s3cret");
  EXPECT_EQ(f.upstream, (Address{"::1", 9000}));
  EXPECT_EQ(f.bind, "::");
  EXPECT_EQ(f.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.options.source_of("port"), Source::flag);
}

TEST(OptionSet, BooleanFlagForms) {
  Fixture f;
  f.parse({"--verbose"});
  EXPECT_TRUE(f.verbose);
  f.parse({"--no-verbose"});
  EXPECT_FALSE(f.verbose);
  f.parse({"--verbose=yes"});
  EXPECT_TRUE(f.verbose);
  f.parse({"--verbose=false"});
  EXPECT_FALSE(f.verbose);
  EXPECT_EQ(f.error({"--no-verbose=1"}),
            "config error: --no-verbose=1 (flag): --no-verbose takes no value");
  EXPECT_EQ(f.error({"--no-port"}),
            "config error: --no-port (flag): --port is not a boolean; use --port=<port>");
}

TEST(OptionSet, PrecedenceIsFlagThenEnvironmentThenFileThenDefault) {
  coromesh::testing::TempDir dir("config");
  const auto path = write_file(dir, "port = 1000\nthreads = 3\ntimeout = 3s\n");
  const std::map<std::string, std::string> env = {{"T_PORT", "2000"}, {"T_THREADS", "5"}};

  Fixture f;
  f.parse({"--config", path, "--port=3000"}, env);
  EXPECT_EQ(f.port, 3000);  // flag beats environment and file
  EXPECT_EQ(f.options.source_of("port"), Source::flag);
  EXPECT_EQ(f.threads, 5);  // environment beats file
  EXPECT_EQ(f.options.source_of("threads"), Source::environment);
  EXPECT_EQ(f.timeout, 3s);  // file beats default
  EXPECT_EQ(f.options.source_of("timeout"), Source::file);
  EXPECT_EQ(f.max_body, 1024u * 1024);  // default
  EXPECT_EQ(f.options.source_of("max-body"), Source::default_value);
}

TEST(OptionSet, ConfigFileMayComeFromTheEnvironment) {
  coromesh::testing::TempDir dir("config");
  const auto path = write_file(dir, "threads = 7\n");
  Fixture f;
  f.parse({}, {{"COROMESH_CONFIG", path}});
  EXPECT_EQ(f.threads, 7);
  Fixture g;
  g.parse({"--config=" + path}, {{"COROMESH_CONFIG", "/nonexistent"}});
  EXPECT_EQ(g.threads, 7) << "--config beats COROMESH_CONFIG";
}

TEST(OptionSet, TheFirstSetEnvironmentVariableOfASettingWins) {
  Fixture f;
  f.parse({}, {{"T_TOKEN_FALLBACK", "second"}});
  EXPECT_EQ(f.token, "second");
  f.parse({}, {{"T_TOKEN", "first"}, {"T_TOKEN_FALLBACK", "second"}});
  EXPECT_EQ(f.token, "first");
}

TEST(OptionSet, NomadFillsPortAndBindBelowExplicitSettings) {
  const std::map<std::string, std::string> nomad = {
      {"NOMAD_PORT_http", "24001"}, {"NOMAD_IP_http", "10.0.0.5"}, {"NOMAD_PORT_admin", "24002"}};
  Fixture f;
  f.parse({}, nomad);
  EXPECT_EQ(f.port, 24001);
  EXPECT_EQ(f.bind, "10.0.0.5");
  EXPECT_EQ(f.options.source_of("port"), Source::nomad);

  coromesh::testing::TempDir dir("config");
  Fixture from_file;
  from_file.parse({"--config", write_file(dir, "port = 1\n")}, nomad);
  EXPECT_EQ(from_file.port, 24001) << "Nomad beats the file";

  auto with_env = nomad;
  with_env["T_PORT"] = "7";
  Fixture g;
  g.parse({}, with_env);
  EXPECT_EQ(g.port, 7) << "an explicit environment variable beats Nomad";
  Fixture h;
  h.parse({"--port=9"}, nomad);
  EXPECT_EQ(h.port, 9) << "a flag beats Nomad";

  Fixture other_label;
  other_label.label = "admin";
  other_label.parse({}, nomad);
  EXPECT_EQ(other_label.port, 24002);
  EXPECT_EQ(other_label.bind, "127.0.0.1") << "no NOMAD_IP_admin";
}

TEST(OptionSet, HelpWinsOverEverythingAndDescribesEverySetting) {
  Fixture f;
  EXPECT_EQ(f.parse({"--port=abc", "--help"}), ParseStatus::help);
  EXPECT_EQ(f.parse({"-h"}), ParseStatus::help);
  f.token = "";
  const auto help = f.options.help();
  EXPECT_NE(help.find("Usage: svc [--setting=value ...]"), std::string::npos) << help;
  EXPECT_NE(help.find("A test service."), std::string::npos) << help;
  EXPECT_NE(
      help.find("  --port=<port>\n      Port.\n      env: T_PORT, NOMAD_PORT_http; default: 0\n"),
      std::string::npos)
      << help;
  EXPECT_NE(help.find("  --verbose[=<bool>], --no-verbose\n"), std::string::npos) << help;
  EXPECT_NE(help.find("env: T_TIMEOUT; default: 10s"), std::string::npos) << help;
  EXPECT_NE(help.find("env: T_MAX_BODY; default: 1MiB"), std::string::npos) << help;
  EXPECT_NE(help.find("env: T_TOKEN, T_TOKEN_FALLBACK; default: (none)"), std::string::npos)
      << help;
  EXPECT_NE(help.find("env: T_UPSTREAM; default: 127.0.0.1:8500"), std::string::npos) << help;
  EXPECT_NE(help.find("env: T_BIND, NOMAD_IP_http; default: 127.0.0.1"), std::string::npos) << help;
  EXPECT_NE(help.find("  --config=<file>"), std::string::npos) << help;
  EXPECT_NE(help.find("env: COROMESH_CONFIG"), std::string::npos) << help;
  EXPECT_NE(help.find("  --help, -h"), std::string::npos) << help;
}

TEST(OptionSet, HelpHidesSecretDefaults) {
  std::string token = "default-secret";
  OptionSet options("svc", "");
  options.add_string(token, {.flag = "token", .help = "Secret.", .secret = true});
  const auto help = options.help();
  EXPECT_EQ(help.find("default-secret"), std::string::npos) << help;
  EXPECT_NE(help.find("default: (hidden)"), std::string::npos) << help;
}

TEST(OptionSet, BadDeclarationsAreProgrammingErrors) {
  int value = 0;
  OptionSet options("svc", "");
  options.add_integer(value, {.flag = "value"}, 0, 10);
  EXPECT_THROW(options.add_integer(value, {.flag = "value"}, 0, 10), std::logic_error);
  EXPECT_THROW(options.add_integer(value, {.flag = "Bad Name"}, 0, 10), std::logic_error);
  EXPECT_THROW(options.add_integer(value, {.flag = "help"}, 0, 10), std::logic_error);
  EXPECT_THROW(options.add_integer(value, {.flag = "no-x"}, 0, 10), std::logic_error);
  std::uint8_t small = 0;
  EXPECT_THROW(options.add_integer(small, {.flag = "small"}, 0, 1000), std::logic_error);
}

TEST(OptionSet, ParsesArgcArgvSkippingTheProgramName) {
  Fixture f;
  const char* argv[] = {"/usr/bin/svc", "--port=81"};
  EXPECT_EQ(f.options.parse(2, argv, Environment::from({})), ParseStatus::ok);
  EXPECT_EQ(f.port, 81);
}

}  // namespace
}  // namespace coromesh::config
