# Sources of the connect module (see framework/CMakeLists.txt): Consul Connect identity
# (certificates, SPIFFE IDs, peer verification, authorization).
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/connect/spiffe_id.cpp)
