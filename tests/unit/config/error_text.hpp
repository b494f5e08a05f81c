#pragma once

// What a config parser says when it refuses input, for tests that assert the message.

#include <string>
#include <utility>

#include "coromesh/config/error.hpp"

namespace coromesh::config::testing {

// The what() of the E that `f` throws, or `none` when it throws nothing.
template <class E, class F>
std::string error_text(F&& f, std::string none) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return e.what();
  }
  return none;
}

// A value parser's InvalidValue message, or "<accepted>".
template <class F>
std::string rejection(F&& parse) {
  return error_text<InvalidValue>(std::forward<F>(parse), "<accepted>");
}

// A ConfigError's one line, or "<no error>".
template <class F>
std::string config_error(F&& f) {
  return error_text<ConfigError>(std::forward<F>(f), "<no error>");
}

}  // namespace coromesh::config::testing
