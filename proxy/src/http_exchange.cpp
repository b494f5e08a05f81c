#include "http_exchange.hpp"

namespace coromesh::sidecar {

bool is_idempotent(http::Verb method) noexcept {
  switch (method) {
    case http::Verb::get:
    case http::Verb::head:
    case http::Verb::put:
    case http::Verb::delete_:
    case http::Verb::options:
    case http::Verb::trace:
      return true;
    default:
      return false;
  }
}

std::string_view target_path(std::string_view target) noexcept {
  return target.substr(0, target.find('?'));
}

}  // namespace coromesh::sidecar
