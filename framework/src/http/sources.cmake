# Sources of the http module (see framework/CMakeLists.txt).
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/http/error.cpp src/http/binding.cpp src/http/json_body_parser.cpp src/http/router.cpp src/http/server.cpp src/http/connection.cpp
  src/http/hang_up_watch.cpp src/http/peer_sign.cpp
  src/http/wire.cpp src/http/trace_context.cpp)
list(APPEND COROMESH_FRAMEWORK_SOURCES src/http/client.cpp src/http/client_pool.cpp
  src/http/resolve.cpp)
list(APPEND COROMESH_FRAMEWORK_SOURCES src/http/server_tls.cpp src/http/client_tls.cpp
  src/http/tls_support.cpp src/http/await_tls_context.cpp)
