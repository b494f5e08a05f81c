#include "coromesh/http/router.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace coromesh::http {
namespace {

std::size_t count_segments(std::string_view path) {
  if (!path.empty() && path.front() == '/') {
    path.remove_prefix(1);
  }
  if (path.empty()) {
    return 0;
  }
  return static_cast<std::size_t>(std::count(path.begin(), path.end(), '/')) + 1;
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  if (!path.empty() && path.front() == '/') {
    path.remove_prefix(1);
  }
  while (!path.empty()) {
    auto slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) {
      break;
    }
    path.remove_prefix(slash + 1);
  }
  return segments;
}

bool is_param(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

void append_method(std::string& allow, Verb method) {
  if (!allow.empty()) {
    allow += ", ";
  }
  allow += beast_http::to_string(method);
}

}  // namespace

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) {
        return false;
      }
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) {
        return false;
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

std::string_view RequestContext::path_param(std::string_view name) const {
  for (const auto& [key, value] : path_params) {
    if (key == name) {
      return value;
    }
  }
  return {};
}

const Route& Router::add(Verb method, std::string_view pattern, std::string operation,
                         Handler handler) {
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route pattern '" + std::string(pattern) + "' must start with '/'");
  }
  if (!handler) {
    throw std::invalid_argument("route " + std::string(pattern) + " has no handler");
  }
  auto route = std::make_unique<Route>();
  route->method = method;
  route->pattern = std::string(pattern);
  route->operation = std::move(operation);
  route->handler = std::move(handler);
  route->index = routes_.size();
  for (auto segment : split_path(pattern)) {
    if (segment.find_first_of("{}") != std::string_view::npos && !is_param(segment)) {
      throw std::invalid_argument("route pattern '" + std::string(pattern) +
                                  "' has a malformed parameter segment '" + std::string(segment) +
                                  "'");
    }
    route->has_params = route->has_params || is_param(segment);
    route->segments.emplace_back(segment);
  }
  for (const auto& existing : routes_) {
    if (existing->method == method && existing->segments == route->segments) {
      throw std::invalid_argument("duplicate route " + std::string(beast_http::to_string(method)) +
                                  " " + std::string(pattern));
    }
  }
  routes_.push_back(std::move(route));
  return *routes_.back();
}

Router::Match Router::match(Verb method, std::string_view path) const {
  Match result;
  // HEAD is answered by the GET route (the server drops the body).
  Verb wanted = method == Verb::head ? Verb::get : method;
  auto segment_count = count_segments(path);
  for (const auto& route : routes_) {
    if (route->segments.size() != segment_count) {
      continue;
    }
    bool matches = true;
    std::vector<std::pair<std::string_view, std::string>> params;
    if (!route->has_params) {
      // Literal routes (most of them) compare as one string: no per-segment work.
      matches = route->pattern == path;
    } else {
      auto rest = path.substr(path.empty() || path.front() != '/' ? 0 : 1);
      for (std::size_t i = 0; i < route->segments.size() && matches; ++i) {
        auto slash = rest.find('/');
        auto segment = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
        const auto& expected = route->segments[i];
        if (is_param(expected)) {
          std::string decoded;
          if (segment.empty() || !percent_decode(segment, decoded)) {
            matches = false;
          } else {
            params.emplace_back(std::string_view(expected).substr(1, expected.size() - 2),
                                std::move(decoded));
          }
        } else {
          matches = expected == segment;
        }
      }
    }
    if (!matches) {
      continue;
    }
    if (route->method == wanted) {
      result.route = route.get();
      result.params = std::move(params);
      result.allow.clear();
      return result;
    }
    append_method(result.allow, route->method);
    if (route->method == Verb::get) {
      append_method(result.allow, Verb::head);
    }
  }
  return result;
}

}  // namespace coromesh::http
