# Sources of the service module (see framework/CMakeLists.txt).
