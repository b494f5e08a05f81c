list(APPEND COROMESH_FRAMEWORK_SOURCES src/log/logger.cpp src/log/async_line_writer.cpp
  src/log/key_rate_limiter.cpp)
