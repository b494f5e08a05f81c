coromesh_add_test(unit_http_client LABEL unit SOURCES client_test.cpp client_hostile_test.cpp
  flat_write_test.cpp)
