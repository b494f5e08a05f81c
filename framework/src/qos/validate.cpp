#include "coromesh/qos/validate.hpp"

namespace coromesh::qos {

void throw_if_invalid(std::string_view name, std::string_view message) {
  if (!message.empty()) {
    throw std::invalid_argument(std::string(name) + ": " + std::string(message));
  }
}

}  // namespace coromesh::qos
