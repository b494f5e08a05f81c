#pragma once

// Declarative settings: each one is declared once — flag name, environment variables,
// help, type — and bound to the variable that receives it; that variable's value at
// declaration time is the default. parse() then fills every variable from, highest
// precedence first:
//
//   1. a command-line flag          --port=8080 or --port 8080 (bools: --x, --no-x, --x=false),
//                                   once (--x and --no-x are the same flag) unless the
//                                   setting is Spec::repeatable
//   2. its environment variables    COROMESH_PORT (the first one set and not empty, in
//                                   declared order)
//   3. Nomad, for settings that ask  NOMAD_PORT_<label> / NOMAD_IP_<label>
//   4. the config file              --config FILE or $COROMESH_CONFIG (see config_file.hpp)
//   5. the default
//
// A repeatable setting (Spec::repeatable) takes every value of every source instead: the
// config file's lines, then its environment variable, then the flags, each value stored
// in turn (Consul concatenates its list settings, retry_join, across files and flags
// alike). The file's list is added to, not replaced; a repeat the setting cannot take
// (two upstreams on one port) is its own validation's to refuse.
//
// Every value from every source is validated, so a bad value stops start-up even when
// a higher source overrides it: a broken file should not wait for the day its
// overriding flag is removed. The first problem throws ConfigError (one line naming
// the setting and its source). --help (or -h) anywhere returns ParseStatus::help
// without validating anything; help() then describes every setting.
//
// Ownership: the option set stores references to the bound variables; they must
// outlive parse(), which is meant to run once (a second call layers on the first).
// Threads: declare and parse on one thread, at start-up.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "coromesh/config/address.hpp"
#include "coromesh/config/environment.hpp"
#include "coromesh/config/error.hpp"
#include "coromesh/config/values.hpp"

namespace coromesh::config {

// Which Nomad variable can fill a setting. Nomad sets NOMAD_PORT_<label> and
// NOMAD_IP_<label> for each port label of a task's network block.
enum class Nomad : std::uint8_t { none, port, ip };

struct Spec {
  std::string flag;              // "port": --port on the command line, `port =` in a file
  std::vector<std::string> env;  // e.g. {"COROMESH_CONSUL_ADDR", "CONSUL_HTTP_ADDR"}
  std::string help;              // one sentence for --help
  Nomad nomad = Nomad::none;
  bool secret = false;       // never echoed: not in --help, not in error messages
  std::string default_help;  // shown instead of the bound value, e.g. "<name>-<port>"
  // May be given more than once on the command line and on several lines of a config
  // file, each value stored in turn (the sidecar's --upstream), the file's first. Any
  // other flag given twice is refused, and so is any other name a file repeats: a
  // repeated flag would otherwise quietly take its last value.
  bool repeatable = false;
};

enum class ParseStatus : std::uint8_t { ok, help };

class OptionSet {
 public:
  // Parses one value into the bound variable, or throws InvalidValue with the reason.
  using Store = std::function<void(std::string_view value)>;

  // Values longer than this are refused before any parser sees them.
  static constexpr std::size_t kMaxValueBytes = 4096;
  static constexpr std::string_view kConfigEnv = "COROMESH_CONFIG";

  // `program` and `description` head the --help text.
  OptionSet(std::string program, std::string description);

  // The general form the typed helpers below use; services with a type of their own
  // call it directly. `value_hint` names the value in --help ("<port>"), `default_text`
  // shows the default. A flag may be declared only once (std::logic_error otherwise).
  void add(Spec spec, std::string value_hint, std::string default_text, Store store);

  void add_string(std::string& target, Spec spec);
  void add_bool(bool& target, Spec spec);
  void add_port(std::uint16_t& target, Spec spec);
  void add_duration(std::chrono::nanoseconds& target, Spec spec,
                    std::chrono::nanoseconds min = std::chrono::nanoseconds(0),
                    std::chrono::nanoseconds max = std::chrono::nanoseconds::max());
  void add_size(std::uint64_t& target, Spec spec, std::uint64_t min = 0,
                std::uint64_t max = std::numeric_limits<std::uint64_t>::max());
  void add_address(Address& target, Spec spec);
  void add_host(std::string& target, Spec spec);        // host name or IP; empty not allowed
  void add_ip_address(std::string& target, Spec spec);  // IP literal only
  void add_list(std::vector<std::string>& target, Spec spec);

  template <std::integral T>
  void add_integer(T& target, Spec spec, std::int64_t min, std::int64_t max) {
    check_integer_range(spec.flag, std::in_range<T>(min) && std::in_range<T>(max) && min <= max);
    add(std::move(spec), "<int>", std::to_string(target), [&target, min, max](std::string_view v) {
      target = static_cast<T>(parse_integer(v, min, max));
    });
  }

  // The Nomad port label that Nomad::port/ip settings use, read when parse() reaches
  // the Nomad step, i.e. after flags, environment and file have set it. Without a
  // label no Nomad variable is read.
  void set_nomad_label(const std::string* label) noexcept { nomad_label_ = label; }

  // `argv[0]` is skipped. Throws ConfigError.
  ParseStatus parse(int argc, const char* const* argv, const Environment& env);
  // `args` without a program name.
  ParseStatus parse(const std::vector<std::string>& args, const Environment& env);

  // Where the bound variable's value came from (after parse); nullopt for an
  // undeclared flag.
  std::optional<Source> source_of(std::string_view flag) const;

  std::string help() const;

 private:
  struct Setting {
    Spec spec;
    std::string value_hint;
    std::string default_text;
    Store store;
    bool is_bool = false;
    Source source = Source::default_value;
  };
  struct CommandLine;

  static void check_integer_range(const std::string& flag, bool fits);
  const Setting* find(std::string_view flag) const;
  Setting* find(std::string_view flag);
  CommandLine read_command_line(const std::vector<std::string>& args) const;
  // `who` names the setting and its source for errors: "--port (flag)".
  static void apply(Setting& setting, std::string_view value, Source source,
                    const std::string& who);
  std::string suggest(std::string_view unknown) const;

  std::string program_;
  std::string description_;
  std::vector<Setting> settings_;
  const std::string* nomad_label_ = nullptr;
};

}  // namespace coromesh::config
