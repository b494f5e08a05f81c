#include "coromesh/config/environment.hpp"

#include <cstdlib>
#include <stdexcept>
#include <utility>

namespace coromesh::config {

Environment::Environment(Lookup lookup) : lookup_(std::move(lookup)) {
  if (!lookup_) {
    throw std::invalid_argument("Environment: lookup must not be empty");
  }
}

Environment Environment::process() {
  return Environment([](const std::string& name) -> std::optional<std::string> {
    // A name with '=' or a NUL cannot be a variable; getenv would look up a prefix.
    if (name.empty() || name.find_first_of(std::string_view("=\0", 2)) != std::string::npos) {
      return std::nullopt;
    }
    const char* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): see header
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  });
}

Environment Environment::from(std::map<std::string, std::string> variables) {
  return Environment([vars = std::move(variables)](const std::string& name) {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  });
}

std::optional<std::string> Environment::get(const std::string& name) const {
  return lookup_(name);
}

}  // namespace coromesh::config
