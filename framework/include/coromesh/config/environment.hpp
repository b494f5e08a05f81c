#pragma once

// Read-only access to environment variables, injectable so that configuration tests
// are hermetic: production code uses Environment::process(), tests a map.
//
// Threads: get() on a map environment may be called from any thread. The process
// environment reads getenv(), which races with setenv(); configuration is parsed once,
// at start-up, before any thread that could call setenv() exists.

#include <functional>
#include <map>
#include <optional>
#include <string>

namespace coromesh::config {

class Environment {
 public:
  // Returns the variable's value, or nullopt when it is not set.
  using Lookup = std::function<std::optional<std::string>(const std::string& name)>;

  explicit Environment(Lookup lookup);

  // The real process environment (getenv).
  static Environment process();
  // A fixed set of variables; values may hold anything, even NULs (tests use that).
  static Environment from(std::map<std::string, std::string> variables);

  std::optional<std::string> get(const std::string& name) const;

 private:
  Lookup lookup_;
};

}  // namespace coromesh::config
