// OptionSet: every way a value, a flag or a file can be wrong, and what the one
// error line then says.

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "coromesh/config/option_set.hpp"
#include "option_set_fixture.hpp"

namespace coromesh::config {
namespace {

using testing::Fixture;
using testing::write_file;
using namespace std::chrono_literals;

TEST(OptionSet, BadNomadValuesNameTheNomadVariable) {
  Fixture f;
  EXPECT_EQ(f.error({}, {{"NOMAD_PORT_http", "http"}}),
            "config error: NOMAD_PORT_http (Nomad environment): 'http' is not a port number "
            "(0-65535)");
}

TEST(OptionSet, ErrorsNameTheSettingAndItsSource) {
  Fixture f;
  EXPECT_EQ(f.error({"--port=abc"}),
            "config error: --port (flag): 'abc' is not a port number (0-65535)");
  EXPECT_EQ(f.error({}, {{"T_THREADS", "0"}}),
            "config error: T_THREADS (environment): '0' is out of range 1..256");
  EXPECT_EQ(f.error({"--threads", "lots"}),
            "config error: --threads (flag): 'lots' is not an integer");
  EXPECT_EQ(f.error({"--timeout=250"}),
            "config error: --timeout (flag): '250' has no unit (use e.g. 250ms, 5s, 1m)");
  EXPECT_EQ(f.error({"--timeout=2h"}),
            "config error: --timeout (flag): '2h' is out of range 1ms..1h");
  EXPECT_EQ(f.error({"--max-body=2GiB"}),
            "config error: --max-body (flag): '2GiB' is out of range 0B..1GiB");
  EXPECT_EQ(f.error({"--upstream=nohost"}),
            "config error: --upstream (flag): 'nohost' is not an address (host:port, e.g. "
            "127.0.0.1:8500 or [::1]:8500)");
}

TEST(OptionSet, BadFileValuesNameFileAndLine) {
  coromesh::testing::TempDir dir("config");
  const auto path = write_file(dir, "# settings\nthreads = 4\nport = abc\n");
  Fixture f;
  EXPECT_EQ(f.error({"--config", path}),
            "config error: port (file " + path + ":3): 'abc' is not a port number (0-65535)");
  EXPECT_EQ(f.error({"--config", write_file(dir, "prot = 1\n")}),
            "config error: " + path + ":1: unknown setting 'prot'; did you mean 'port'?");
  EXPECT_EQ(f.error({"--config", write_file(dir, "threads: 4\n")}),
            "config error: " + path + ":1: expected 'name = value', got 'threads: 4'");
}

// A file's names are the flags without "--", and a switch is written `verbose = false`:
// the --no-verbose form is a flag only. Someone who copies a command line into a file
// writes `no-verbose = true`; the error says what to write instead.
TEST(OptionSet, AFileLineWrittenAsAFlagSaysHowAFileSpellsIt) {
  coromesh::testing::TempDir dir("config");
  Fixture f;
  const auto path = write_file(dir, "no-verbose = true\n");
  EXPECT_EQ(f.error({"--config", path}),
            "config error: " + path +
                ":1: unknown setting 'no-verbose'; a file writes 'verbose = false'");
}

TEST(OptionSet, AValueOverriddenByAHigherSourceIsStillValidated) {
  coromesh::testing::TempDir dir("config");
  const auto path = write_file(dir, "port = abc\n");
  Fixture f;
  EXPECT_EQ(f.error({"--config", path, "--port=80"}),
            "config error: port (file " + path + ":1): 'abc' is not a port number (0-65535)");
}

TEST(OptionSet, UnknownFlagsMissingValuesAndStrayArguments) {
  Fixture f;
  EXPECT_EQ(f.error({"--prot=80"}),
            "config error: --prot (flag): unknown flag; did you mean --port? (--help lists all "
            "settings)");
  EXPECT_EQ(f.error({"--frobnicate"}),
            "config error: --frobnicate (flag): unknown flag (--help lists all settings)");
  EXPECT_EQ(f.error({"--port"}), "config error: --port (flag): missing value (--port=<port>)");
  EXPECT_EQ(f.error({"--port", "--threads", "4"}),
            "config error: --port (flag): missing value (--port=<port>)");
  EXPECT_EQ(f.error({"--config"}),
            "config error: --config (flag): missing value (--config=<file>)");
  EXPECT_EQ(f.error({"serve"}),
            "config error: serve (flag): unexpected argument; settings are given as --name=value");
  EXPECT_EQ(f.error({"-p", "80"}),
            "config error: -p (flag): unknown flag; flags are written --name=value (--help lists "
            "them)");
  EXPECT_EQ(f.error({"--"}),
            "config error: -- (flag): unexpected argument; settings are given as --name=value");
}

// Was: a flag given twice took its last value without a word, while a config file
// refuses a repeated name. Refused in every spelling, before either value is read (a
// secret's included), --x and --no-x being one flag.
TEST(OptionSet, AFlagGivenTwiceIsRefusedNamingIt) {
  Fixture f;
  const std::string port_twice =
      "config error: --port (flag): --port is given more than once; give it once";
  EXPECT_EQ(f.error({"--port=1", "--port=2"}), port_twice);
  EXPECT_EQ(f.error({"--port", "1", "--port", "2"}), port_twice);
  EXPECT_EQ(f.error({"--port=1", "--threads=2", "-port", "1"}), port_twice)
      << "the same value twice, in Go's single-dash spelling, is still twice";
  EXPECT_EQ(f.error({"--verbose", "--no-verbose"}),
            "config error: --no-verbose (flag): --verbose (or --no-verbose) is given more than "
            "once; give it once");
  EXPECT_EQ(f.error({"--no-verbose", "--verbose=true"}),
            "config error: --verbose (flag): --verbose (or --no-verbose) is given more than "
            "once; give it once");
  EXPECT_EQ(f.error({"--config", "a.conf", "--config=b.conf"}),
            "config error: --config (flag): --config is given more than once; give it once");
  const auto secret = f.error({"--token=hunter2", "--token", "hunter3"});
  EXPECT_EQ(secret, "config error: --token (flag): --token is given more than once; give it once");
}

// A setting declared repeatable takes every value given, in order.
TEST(OptionSet, ARepeatableFlagTakesEveryValue) {
  std::vector<std::string> seen;
  OptionSet options("svc", "test");
  options.add({.flag = "route", .help = "A route; repeatable.", .repeatable = true}, "<route>", "",
              [&seen](std::string_view v) { seen.emplace_back(v); });
  options.parse({"--route=a", "--route", "b", "-route=c"}, Environment::from({}));
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c"}));
}

// Was: a file refused any repeated name, so it could hold one upstream. It repeats what
// the command line repeats; the file's values come first and the flags add to them, as
// Consul's own list settings (retry_join) concatenate across files and flags.
TEST(OptionSet, AFileRepeatsARepeatableSettingAndFlagsAddToIt) {
  coromesh::testing::TempDir dir("config");
  std::vector<std::string> seen;
  std::uint16_t port = 0;
  OptionSet options("svc", "test");
  options.add({.flag = "route", .help = "A route; repeatable.", .repeatable = true}, "<route>", "",
              [&seen](std::string_view v) { seen.emplace_back(v); });
  options.add_port(port, {.flag = "port", .help = "Port."});
  const auto path = write_file(dir, "route = a\nport = 1\nroute = b\n");
  options.parse({"--config", path, "--route=c"}, Environment::from({}));
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(port, 1);
}

TEST(OptionSet, AFileStillRefusesARepeatedNameThatIsNotRepeatable) {
  coromesh::testing::TempDir dir("config");
  Fixture f;
  const auto path = write_file(dir, "port = 1\n# x\nthreads = 2\nport = 2\n");
  EXPECT_EQ(f.error({"--config", path}),
            "config error: " + path + ":4: 'port' is already set on line 1");
}

TEST(OptionSet, UnknownFlagErrorsNeverEchoTheValue) {
  Fixture f;
  const auto message = f.error({"--tokn=hunter2"});
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean --token?"), std::string::npos) << message;
}

TEST(OptionSet, SecretValuesAreNeverEchoed) {
  Fixture f;
  const auto message = f.error({}, {{"T_TOKEN", "hunter2\nX"}});
  EXPECT_EQ(message, "config error: T_TOKEN (environment): the value contains a control character");
}

TEST(OptionSet, HostileValuesGiveOneLineErrors) {
  Fixture f;
  const std::string nul_value("80\0 81", 6);
  EXPECT_EQ(f.error({}, {{"T_PORT", nul_value}}),
            R"(config error: T_PORT (environment): '80\x00 81' contains a control character)");
  EXPECT_EQ(
      f.error({}, {{"T_NAME", "svc\nlevel=error fake=1"}}),
      R"(config error: T_NAME (environment): 'svc\nlevel=error fake=1' contains a control character)");
  EXPECT_EQ(f.error({"--name=" + std::string(100'000, 'x')}),
            "config error: --name (flag): value is too long (100000 bytes, at most 4096)");
  EXPECT_EQ(f.error({"--port=" + std::string(4000, '9')}),
            "config error: --port (flag): '" + std::string(80, '9') +
                "'... (4000 bytes) is not a port number (0-65535)");
  const auto weird_flag = f.error({std::string("--na\nme=x")});
  EXPECT_EQ(weird_flag.find('\n'), std::string::npos) << weird_flag;
  const auto huge_flag = f.error({"--" + std::string(100'000, 'a')});
  EXPECT_LT(huge_flag.size(), 300u);
  EXPECT_EQ(huge_flag.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace coromesh::config
