# Sources of the metrics module (see framework/CMakeLists.txt).
