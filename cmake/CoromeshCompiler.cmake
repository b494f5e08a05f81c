# Which compilers build coromesh safely.
#
# g++ before 13 (Debian 12 ships g++ 12.2) destroys a temporary with a non-trivial
# destructor twice when the temporary is created inside a co_await operand, e.g.
# `co_await client.execute(Greeting{"a string over 15 chars"})`: the process aborts with
# `free(): double free detected`. A plain Asio program reproduces it (a GCC coroutine bug,
# fixed in GCC 13); clang 14 and 16 are correct. The top
# CMakeLists.txt therefore defaults to clang++-16. A build that chooses GCC < 13 still
# compiles: OperationClient::execute then refuses, at compile time, the rvalue
# arguments that would crash (service/operation_client.hpp).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  message(WARNING "coromesh: building with g++ ${CMAKE_CXX_COMPILER_VERSION}, which destroys "
                  "temporaries created in a co_await operand twice. The library compiles, "
                  "but co_await client.execute(Arg{...}) with a string-holding Arg is a "
                  "compile error; clang++-16 (the default) or g++ >= 13 has no such limit.")
endif()
message(STATUS "coromesh: C++ compiler ${CMAKE_CXX_COMPILER} "
               "(${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION})")
