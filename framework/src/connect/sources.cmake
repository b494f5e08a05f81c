# Sources of the connect module (see framework/CMakeLists.txt).
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/connect/endpoint_set.cpp
  src/connect/endpoint_watch.cpp
  src/connect/load_balancer.cpp)
