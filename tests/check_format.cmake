# Fails when any C++ source under the project's directories differs from .clang-format.
file(GLOB_RECURSE sources
  ${SOURCE_DIR}/framework/*.hpp ${SOURCE_DIR}/framework/*.cpp
  ${SOURCE_DIR}/services/*.hpp ${SOURCE_DIR}/services/*.cpp
  ${SOURCE_DIR}/proxy/*.hpp ${SOURCE_DIR}/proxy/*.cpp
  ${SOURCE_DIR}/tests/*.hpp ${SOURCE_DIR}/tests/*.cpp
  ${SOURCE_DIR}/benchmarks/*.hpp ${SOURCE_DIR}/benchmarks/*.cpp)
list(FILTER sources EXCLUDE REGEX "/tests/compile_fail/")
execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${sources}
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clang-format: these files need formatting "
    "(run clang-format-14 -i on them):\n${err}")
endif()
list(LENGTH sources count)
message(STATUS "clang-format: ${count} files formatted as .clang-format says")
