# Sources of the consul module (see framework/CMakeLists.txt).
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/consul/types.cpp
  src/consul/error.cpp
  src/consul/encoding.cpp
  src/consul/json_codec.cpp
  src/consul/connect_codec.cpp
  src/consul/agent_client.cpp
  src/consul/token_source.cpp
  src/consul/http_agent_client.cpp
  src/consul/backoff.cpp
  src/consul/watch.cpp
  src/consul/registrar.cpp)
