// OptionSet::help(): the --help text, one block per setting.

#include <sstream>

#include "coromesh/config/config_file.hpp"
#include "coromesh/config/option_set.hpp"

namespace coromesh::config {

std::string OptionSet::help() const {
  std::ostringstream out;
  out << "Usage: " << program_ << " [--setting=value ...]\n";
  if (!description_.empty()) {
    out << "\n" << description_ << "\n";
  }
  out << "\nEach setting comes from, highest precedence first: its --flag, its environment\n"
         "variable, Nomad's NOMAD_PORT_/NOMAD_IP_ variable (where listed), the config file,\n"
         "its default.\n\n";
  for (const auto& setting : settings_) {
    const auto& spec = setting.spec;
    out << "  --" << spec.flag;
    if (setting.is_bool) {
      out << "[=" << setting.value_hint << "], --no-" << spec.flag << "\n";
    } else {
      out << "=" << setting.value_hint << "\n";
    }
    if (!spec.help.empty()) {
      out << "      " << spec.help << "\n";
    }
    std::string env;
    for (const auto& name : spec.env) {
      env += (env.empty() ? "" : ", ") + name;
    }
    if (spec.nomad != Nomad::none) {
      const std::string label =
          nomad_label_ != nullptr && !nomad_label_->empty() ? *nomad_label_ : "<label>";
      env += (env.empty() ? "" : ", ") +
             std::string(spec.nomad == Nomad::port ? "NOMAD_PORT_" : "NOMAD_IP_") + label;
    }
    std::string shown_default = spec.default_help;
    if (shown_default.empty()) {
      shown_default = spec.secret && !setting.default_text.empty() ? "(hidden)"
                      : setting.default_text.empty()               ? "(none)"
                                                                   : setting.default_text;
    }
    out << "      ";
    if (!env.empty()) {
      out << "env: " << env << "; ";
    }
    out << "default: " << shown_default << "\n";
  }
  out << "  --config=<file>\n"
         "      Read settings from a file of 'name = value' lines (names as the flags above,\n"
         "      without --; lines starting with # are comments).\n"
         "      env: "
      << kConfigEnv
      << "\n"
         "  --help, -h\n"
         "      Print this help and exit.\n";
  return out.str();
}

}  // namespace coromesh::config
