# Configures the source tree with g++ 12 (Debian 12's system compiler) in WORK_DIR and
# builds the framework library: coromesh defaults to clang++-16, and this keeps the
# library compiling for consumers still on g++ 12. Then a find_package consumer
# configured with g++ 12 must be warned about the compiler's bug. Incremental (and cached by ccache):
# a cold run takes about 10 minutes on 2 cores.
#   cmake -DSOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=Ninja -DGXX=/usr/bin/g++-12 -P this
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}")
  endif()
  # CMake wraps a warning's text at any space: compare on one line.
  string(REGEX REPLACE "[ \t\r\n]+" " " out "${out}")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR} -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${GXX} -DCOROMESH_BUILD_TESTS=OFF -DCOROMESH_BUILD_BENCHMARKS=OFF)
# The build must really be g++ 12, and the configure must warn about its bug.
if(NOT last_output MATCHES "coromesh: C\\+\\+ compiler [^ ]+ \\(GNU 12\\.")
  message(FATAL_ERROR "the tree was not configured with g++ 12:\n${last_output}")
endif()
if(NOT last_output MATCHES "destroys temporaries created in a co_await operand twice")
  message(FATAL_ERROR "configuring with g++ 12 printed no warning about its coroutine bug:\n"
                      "${last_output}")
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR} --target coromesh_framework --parallel 2)
message(STATUS "coromesh_framework builds with ${GXX}")

# A find_package consumer on g++ 12 is warned too (cmake/coromeshConfig.cmake.in).
file(REMOVE_RECURSE ${WORK_DIR}/prefix ${WORK_DIR}/consumer)
run(${CMAKE_COMMAND} --install ${WORK_DIR} --prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer -B ${WORK_DIR}/consumer
    -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${GXX} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
if(NOT last_output MATCHES "coromesh: [^ ]+ is g\\+\\+ 12\\.[0-9.]+, which destroys temporaries")
  message(FATAL_ERROR "find_package(coromesh) under g++ 12 printed no warning:\n${last_output}")
endif()
