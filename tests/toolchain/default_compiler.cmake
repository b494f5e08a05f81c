# A fresh configure that names no compiler (no CXX, no -DCMAKE_CXX_COMPILER) must pick
# clang++-16 (the top CMakeLists.txt; g++ 12 miscompiles co_await temporaries).
#   cmake -DSOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=Ninja -P this
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env --unset=CXX
    ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR} -G ${GENERATOR}
    -DCOROMESH_BUILD_TESTS=OFF -DCOROMESH_BUILD_BENCHMARKS=OFF
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configure failed (${rc}):\n${out}")
endif()
file(STRINGS ${WORK_DIR}/CMakeCache.txt compiler REGEX "^CMAKE_CXX_COMPILER:")
if(NOT compiler MATCHES "clang\\+\\+-16$")
  message(FATAL_ERROR "a configure without a compiler chose '${compiler}', not clang++-16:\n${out}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
message(STATUS "default compiler: ${compiler}")
