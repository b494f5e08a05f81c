# Sources of the config module (see framework/CMakeLists.txt).
