#pragma once

#include <string_view>

namespace coromesh {

// The framework's version, as set by the top-level CMake project().
std::string_view version() noexcept;

}  // namespace coromesh
