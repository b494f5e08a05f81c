# Sources of the config module (see framework/CMakeLists.txt).
# OptionSet's implementation is split by concern: parsing (option_set.cpp), typed
# declarations (option_set_types.cpp) and the --help text (option_set_help.cpp).
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/config/error.cpp
  src/config/environment.cpp
  src/config/values.cpp
  src/config/address.cpp
  src/config/config_file.cpp
  src/config/option_set.cpp
  src/config/option_set_types.cpp
  src/config/option_set_help.cpp
  src/config/service_config.cpp)
