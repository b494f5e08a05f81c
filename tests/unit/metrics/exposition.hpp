#pragma once

// Reads samples back out of a Prometheus text exposition, for assertions.

#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace coromesh::metrics::testing {

// The value of the sample whose name-and-labels part is exactly `series`, e.g.
// `foo_total{code="200",service="a"}`; nullopt when no such line exists.
inline std::optional<double> sample(const std::string& exposition, std::string_view series) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

inline bool has_line(const std::string& exposition, std::string_view wanted) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line == wanted) {
      return true;
    }
  }
  return false;
}

}  // namespace coromesh::metrics::testing
