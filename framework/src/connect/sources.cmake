# Sources of the connect module (see framework/CMakeLists.txt): Consul Connect identity
# (certificates, SPIFFE IDs, peer verification, authorization) and discovery (endpoint
# watch, load balancing, outlier ejection).
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/connect/spiffe_id.cpp
  src/connect/tls_contexts.cpp
  src/connect/tls_session_cache.cpp
  src/connect/peer_verifier.cpp
  src/connect/certificate_source.cpp
  src/connect/authorizer.cpp
  src/connect/endpoint_set.cpp
  src/connect/endpoint_watch.cpp
  src/connect/load_balancer.cpp
  src/connect/peer_serial.cpp)
