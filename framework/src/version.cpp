#include "coromesh/version.hpp"

namespace coromesh {

std::string_view version() noexcept {
  return COROMESH_VERSION;
}

}  // namespace coromesh
