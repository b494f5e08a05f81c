# Sources of the runtime module (see framework/CMakeLists.txt).
list(APPEND COROMESH_FRAMEWORK_SOURCES src/runtime/io_pool.cpp)
