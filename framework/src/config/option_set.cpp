#include "coromesh/config/option_set.hpp"

#include <algorithm>
#include <stdexcept>

#include "coromesh/config/config_file.hpp"

namespace coromesh::config {

struct OptionSet::CommandLine {
  struct Value {
    std::size_t setting;  // index into settings_
    std::string value;
    std::string who;  // "--port (flag)"
  };
  std::vector<Value> values;
  std::optional<std::string> config_path;
};

namespace {

bool is_flag_name(std::string_view name) {
  return !name.empty() && name.front() != '-' &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string_view::npos;
}

// A command-line word as it may be shown in an error: verbatim when it is short plain
// text, quoted and escaped otherwise.
std::string shown(std::string_view arg) {
  const bool plain = arg.size() <= 80 && std::all_of(arg.begin(), arg.end(),
                                                     [](char c) { return c > ' ' && c < 0x7F; });
  return plain ? std::string(arg) : quote_value(arg);
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

OptionSet::OptionSet(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}

void OptionSet::add(Spec spec, std::string value_hint, std::string default_text, Store store) {
  // Declarations are code, not input: a bad one is a programming error.
  if (!is_flag_name(spec.flag) || spec.flag == "help" || spec.flag == "config" ||
      spec.flag.starts_with("no-")) {
    throw std::logic_error("OptionSet: invalid flag name '" + spec.flag + "'");
  }
  if (find(spec.flag) != nullptr) {
    throw std::logic_error("OptionSet: --" + spec.flag + " is declared twice");
  }
  if (!store) {
    throw std::logic_error("OptionSet: --" + spec.flag + " has no parser");
  }
  settings_.push_back(
      Setting{std::move(spec), std::move(value_hint), std::move(default_text), std::move(store)});
}

void OptionSet::check_integer_range(const std::string& flag, bool fits) {
  if (!fits) {
    throw std::logic_error("OptionSet: the range of --" + flag + " does not fit its type");
  }
}

const OptionSet::Setting* OptionSet::find(std::string_view flag) const {
  auto it = std::find_if(settings_.begin(), settings_.end(),
                         [&](const Setting& s) { return s.spec.flag == flag; });
  return it == settings_.end() ? nullptr : &*it;
}

OptionSet::Setting* OptionSet::find(std::string_view flag) {
  return const_cast<Setting*>(std::as_const(*this).find(flag));
}

std::optional<Source> OptionSet::source_of(std::string_view flag) const {
  const auto* setting = find(flag);
  return setting ? std::optional<Source>(setting->source) : std::nullopt;
}

std::string OptionSet::suggest(std::string_view unknown) const {
  std::string best;
  std::size_t best_distance = 3;  // further than two edits is a different word
  for (const auto& setting : settings_) {
    const auto distance = edit_distance(unknown, setting.spec.flag);
    if (distance < best_distance) {
      best_distance = distance;
      best = setting.spec.flag;
    }
  }
  return best;
}

OptionSet::CommandLine OptionSet::read_command_line(const std::vector<std::string>& args) const {
  CommandLine line;
  std::vector<bool> given(settings_.size(), false);
  for (std::size_t i = 0; i < args.size(); ++i) {
    // Go's flag package (and so every Consul and Nomad command) takes "-name" as well as
    // "--name"; users copy `-sidecar-for` from Consul's docs. A single dash is read as
    // two for declared settings only, so "-x" still gets the unknown-flag message.
    std::string normalized;
    if (const std::string_view raw = args[i];
        raw.size() > 2 && raw[0] == '-' && raw[1] != '-' &&
        find(raw.substr(1, raw.find('=') == std::string_view::npos ? std::string_view::npos
                                                                   : raw.find('=') - 1)) !=
            nullptr) {
      normalized = "-" + std::string(raw);
    }
    const std::string_view arg = normalized.empty() ? std::string_view(args[i]) : normalized;
    if (!arg.starts_with("--") || arg == "--") {
      throw ConfigError(shown(arg) + " (flag): " +
                        (arg.starts_with("-") && arg.size() > 1 && arg != "--"
                             ? "unknown flag; flags are written --name=value (--help lists them)"
                             : "unexpected argument; settings are given as --name=value"));
    }
    const auto body = arg.substr(2);
    const auto equals = body.find('=');
    const auto name = body.substr(0, equals);
    std::optional<std::string> value;
    if (equals != std::string_view::npos) {
      value = std::string(body.substr(equals + 1));
    }

    const Setting* setting = find(name);
    const bool negated = setting == nullptr && name.starts_with("no-") &&
                         find(name.substr(3)) != nullptr && find(name.substr(3))->is_bool;
    if (negated) {
      if (value) {
        throw ConfigError(shown(arg) + " (flag): --" + std::string(name) + " takes no value");
      }
      setting = find(name.substr(3));
      value = "false";
    }
    if (setting == nullptr && name.starts_with("no-") && find(name.substr(3)) != nullptr) {
      const auto* valued = find(name.substr(3));
      throw ConfigError(shown("--" + std::string(name)) + " (flag): --" + valued->spec.flag +
                        " is not a boolean; use --" + valued->spec.flag + "=" + valued->value_hint);
    }
    if (setting == nullptr && name != "config") {
      const auto near = suggest(name);
      // Only the name: "--consul-tokn=<secret>" must not put the secret in a log.
      throw ConfigError(shown("--" + std::string(name)) + " (flag): unknown flag" +
                        (near.empty() ? "" : "; did you mean --" + near + "?") +
                        " (--help lists all settings)");
    }
    const std::string display = "--" + std::string(name);
    // Refused before its value is read, so that neither value (a secret, maybe) is shown.
    const bool again = setting == nullptr
                           ? line.config_path.has_value()
                           : !setting->spec.repeatable &&
                                 given[static_cast<std::size_t>(setting - settings_.data())];
    if (again) {
      const std::string flag = setting == nullptr ? "config" : setting->spec.flag;
      throw ConfigError(display + " (flag): --" + flag +
                        (setting != nullptr && setting->is_bool ? " (or --no-" + flag + ")" : "") +
                        " is given more than once; give it once");
    }
    if (setting != nullptr) {
      given[static_cast<std::size_t>(setting - settings_.data())] = true;
    }
    if (!value && setting != nullptr && setting->is_bool) {
      value = "true";
    }
    if (!value) {
      // "--port --threads 4" is a forgotten value, not a port named "--threads".
      if (i + 1 >= args.size() || args[i + 1].starts_with("--")) {
        throw ConfigError(display + " (flag): missing value (" + display + "=" +
                          (setting ? setting->value_hint : std::string("<file>")) + ")");
      }
      value = args[++i];
    }
    if (setting == nullptr) {
      line.config_path = std::move(value);
    } else {
      line.values.push_back({static_cast<std::size_t>(setting - settings_.data()),
                             std::move(*value), display + " (flag)"});
    }
  }
  return line;
}

void OptionSet::apply(Setting& setting, std::string_view value, Source source,
                      const std::string& who) {
  const bool secret = setting.spec.secret;
  if (value.size() > kMaxValueBytes) {
    throw ConfigError(who + ": value is too long (" + std::to_string(value.size()) +
                      " bytes, at most " + std::to_string(kMaxValueBytes) + ")");
  }
  if (std::any_of(value.begin(), value.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; })) {
    throw ConfigError(who + ": " + (secret ? std::string("the value") : quote_value(value)) +
                      " contains a control character");
  }
  try {
    setting.store(value);
  } catch (const InvalidValue& e) {
    throw ConfigError(who + ": " + (secret ? std::string("the value is not valid") : e.what()));
  }
  setting.source = source;
}

ParseStatus OptionSet::parse(int argc, const char* const* argv, const Environment& env) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    args.emplace_back(argv[i]);
  }
  return parse(args, env);
}

ParseStatus OptionSet::parse(const std::vector<std::string>& args, const Environment& env) {
  if (std::any_of(args.begin(), args.end(),
                  [](const std::string& a) { return a == "--help" || a == "-h"; })) {
    return ParseStatus::help;
  }
  // Unknown flags are reported before anything is read: they are the likeliest typo.
  auto command_line = read_command_line(args);

  std::optional<ConfigFile> file;
  // A file repeats exactly what the command line may repeat: one `upstream =` line per
  // upstream, as one --upstream per upstream.
  const auto repeatable = [this](std::string_view name) {
    const Setting* setting = find(name);
    return setting != nullptr && setting->spec.repeatable;
  };
  if (command_line.config_path) {
    file = ConfigFile::load(*command_line.config_path, "--config (flag)", repeatable);
  } else if (auto path = env.get(std::string(kConfigEnv)); path && !path->empty()) {
    file = ConfigFile::load(*path, std::string(kConfigEnv) + " (environment)", repeatable);
  }
  if (file) {
    for (const auto& entry : file->entries()) {
      const auto where = file->origin() + ":" + std::to_string(entry.line);
      Setting* setting = find(entry.name);
      if (setting == nullptr && entry.name.starts_with("no-")) {
        // `--no-consul-register` copied from a command line: a file sets the switch.
        if (const Setting* negated = find(entry.name.substr(3));
            negated != nullptr && negated->is_bool) {
          throw ConfigError(where + ": unknown setting '" + entry.name + "'; a file writes '" +
                            entry.name.substr(3) + " = false'");
        }
      }
      if (setting == nullptr) {
        const auto near = suggest(entry.name);
        throw ConfigError(where + ": unknown setting '" + entry.name + "'" +
                          (near.empty() ? "" : "; did you mean '" + near + "'?"));
      }
      apply(*setting, entry.value, Source::file, entry.name + " (file " + where + ")");
    }
  }
  // A variable set to nothing is unset, as COROMESH_CONFIG above and Consul's own tools
  // take it (`export CONSUL_HTTP_ADDR=`, a compose file's ${PORT} of an unset variable):
  // it neither stops start-up nor hides the next variable or source.
  for (auto& setting : settings_) {
    for (const auto& name : setting.spec.env) {
      if (auto value = env.get(name); value && !value->empty()) {
        apply(setting, *value, Source::environment, name + " (environment)");
        break;
      }
    }
  }
  for (const auto& flag : command_line.values) {
    apply(settings_[flag.setting], flag.value, Source::flag, flag.who);
  }
  // Last, because the label itself may have come from any of the sources above.
  if (nomad_label_ != nullptr && !nomad_label_->empty()) {
    for (auto& setting : settings_) {
      if (setting.spec.nomad == Nomad::none || setting.source > Source::nomad) {
        continue;
      }
      const auto name =
          (setting.spec.nomad == Nomad::port ? "NOMAD_PORT_" : "NOMAD_IP_") + *nomad_label_;
      if (auto value = env.get(name); value && !value->empty()) {
        apply(setting, *value, Source::nomad, name + " (Nomad environment)");
      }
    }
  }
  return ParseStatus::ok;
}

}  // namespace coromesh::config
