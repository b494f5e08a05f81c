# Sources of the metrics module (see framework/CMakeLists.txt).
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/metrics/registry.cpp
  src/metrics/http_server_metrics.cpp
  src/metrics/process_collector.cpp
  src/metrics/log_collector.cpp
  src/metrics/consul_collector.cpp)
