coromesh_add_test(unit_http_client LABEL unit SOURCES client_test.cpp client_hostile_test.cpp
  flat_write_test.cpp)
# Name resolution held by the test itself (it defines getaddrinfo()): its own binary.
coromesh_add_test(unit_http_client_resolution LABEL unit SOURCES client_resolution_test.cpp)
