# http::Client against in-process loopback servers (included by CMakeLists.txt here).
coromesh_add_test(unit_http_client LABEL unit SOURCES client_test.cpp)
