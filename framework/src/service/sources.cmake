# Sources of the service module (see framework/CMakeLists.txt).
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/service/service.cpp
  src/service/operation_client.cpp
  src/service/qos_metrics.cpp
  src/service/remote_error.cpp
  src/service/fault_classifier.cpp
  src/service/discovered_upstream.cpp
  src/service/connect_native.cpp)
